"""decide() gives the variation optimizely-sdk 5.7.0 gives, on thousands of generated datafiles.

Each generated datafile is loaded by both; each call goes to `Optimizely.get_variation` and to
`decide`. Forced variations go through the SDK's `set_forced_variation`; sticky variations
through a user profile service, which is where the SDK reads remembered decisions from.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from optimizely import optimizely
from optimizely.logger import NoOpLogger

from tests.parity.datafile_generator import Call, Case, DatafileGenerator
from tests.support.oracle import CapturingDispatcher
from trackd.datafile import ProjectConfig, parse_datafile
from trackd.decision import Reason, decide

DATAFILES = 4000
CALLS_PER_EXPERIMENT = 24
SEEDS = (20240501, 7)


@pytest.fixture(autouse=True)
def quiet_sdk() -> Iterator[None]:
    """The SDK's NoOpLogger still logs to the standard library; keep that out of the run."""
    sdk_logger = logging.getLogger("optimizely")
    level = sdk_logger.level
    sdk_logger.setLevel(logging.CRITICAL + 1)
    yield
    sdk_logger.setLevel(level)


class ProfileService:
    """A user profile service answering with whatever profile the test set last."""

    def __init__(self) -> None:
        self.profile: dict[str, Any] | None = None

    def lookup(self, user_id: str) -> dict[str, Any] | None:
        return self.profile

    def save(self, user_profile: dict[str, Any]) -> None:
        pass


def is_known_sdk_crash(error: Exception) -> bool:
    """The SDK raises comparing a pre-release target part with a numeric user part via int()."""
    return isinstance(error, ValueError) and "invalid literal for int()" in str(error)


def sdk_variation(
    sdk: optimizely.Optimizely, profiles: ProfileService, experiment_id: str, call: Call
) -> str | None:
    if call.forced_variation_key is not None:
        assert sdk.set_forced_variation(
            call.experiment_key, call.user_id, call.forced_variation_key
        )
    if call.sticky_variation_id is not None:
        profiles.profile = {
            "user_id": call.user_id,
            "experiment_bucket_map": {experiment_id: {"variation_id": call.sticky_variation_id}},
        }
    try:
        return sdk.get_variation(call.experiment_key, call.user_id, call.attributes)
    finally:
        profiles.profile = None
        if call.forced_variation_key is not None:
            sdk.set_forced_variation(call.experiment_key, call.user_id, None)


def our_variation(config: ProjectConfig, call: Call) -> tuple[str | None, Reason]:
    experiment = config.experiments_by_key[call.experiment_key]
    forced_id = None
    if call.forced_variation_key is not None:
        forced_id = experiment.variations_by_key[call.forced_variation_key].id
    decision = decide(
        config,
        experiment,
        call.user_id,
        call.attributes,
        forced_variation_id=forced_id,
        sticky_variation_id=call.sticky_variation_id,
    )
    return (decision.variation.key if decision.variation else None), decision.reason


def compare_case(case: Case, counts: Counter[str], mismatches: list[str]) -> None:
    datafile_json = case.datafile_json
    config = parse_datafile(datafile_json)
    profiles = ProfileService()
    sdk = optimizely.Optimizely(
        datafile_json,
        event_dispatcher=CapturingDispatcher(),
        logger=NoOpLogger(),
        user_profile_service=profiles,
    )
    try:
        assert sdk.is_valid
        for call in case.calls:
            experiment_id = config.experiments_by_key[call.experiment_key].id
            try:
                expected = sdk_variation(sdk, profiles, experiment_id, call)
            except Exception as error:
                if not is_known_sdk_crash(error):
                    raise
                counts["sdk_raised_skipped"] += 1
                continue
            actual, reason = our_variation(config, call)
            counts["calls"] += 1
            counts[f"reason_{reason.value}"] += 1
            if actual != expected:
                mismatches.append(
                    f"{call} -> ours {actual!r} ({reason.name}), sdk {expected!r}\n"
                    f"datafile: {datafile_json}"
                )
    finally:
        sdk.close()
    counts["datafiles"] += 1
    counts[f"datafiles_v{case.datafile['version']}"] += 1


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_decide_agrees_with_sdk_get_variation_on_generated_datafiles(
    seed: int, parity_counts: Counter[str]
) -> None:
    generator = DatafileGenerator(seed)
    counts: Counter[str] = Counter()
    mismatches: list[str] = []
    for _ in range(DATAFILES // len(SEEDS)):
        compare_case(generator.case(CALLS_PER_EXPERIMENT), counts, mismatches)
    parity_counts.update(counts)
    assert not mismatches, f"{len(mismatches)} of {counts['calls']} disagree; first:\n" + (
        "\n".join(mismatches[:3])
    )
    # Every path of the decision must have been exercised, or the generator has drifted.
    assert all(counts[f"reason_{reason.value}"] > 0 for reason in Reason), counts
