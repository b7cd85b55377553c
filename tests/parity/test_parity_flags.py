"""decide_all / decide_for_keys give what optimizely-sdk 5.7.0's user context decide gives, flag
for flag: the flags returned, variation key, enabled, rule key and every variable's value.

Each generated datafile (tests/parity/flags_generator.py) is loaded by both. The SDK decides
with DISABLE_DECISION_EVENT added (nothing is sent), ODP disabled, a CMAB service that cannot be
reached (trackd calls none), and a user profile service answering with the call's stored
variations, which trackd receives as its sticky lookup. One case is one flag decision compared.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from typing import Any

import pytest
from optimizely import optimizely
from optimizely.decision.optimizely_decide_option import OptimizelyDecideOption
from optimizely.helpers.sdk_settings import OptimizelySdkSettings
from optimizely.logger import NoOpLogger
from optimizely.optimizely_user_context import OptimizelyUserContext

from tests.parity.flags_generator import DecideCall, FlagCase, FlagsGenerator
from tests.parity.test_parity_decisions import is_known_sdk_crash
from tests.parity.test_parity_decisions import quiet_sdk as quiet_sdk  # autouse: the SDK's logging
from tests.support.oracle import CapturingDispatcher
from trackd.datafile import ProjectConfig, parse_datafile
from trackd.decision.flags import DecideOption, FlagDecision, decide_all, decide_for_keys

DATAFILES = 1200
CALLS_PER_DATAFILE = 8
SEEDS = (20261207, 15)
MIN_CASES = 20_000


class ProfileService:
    """Answers with a fresh copy of the profile the test set (the SDK updates what it reads)."""

    def __init__(self) -> None:
        self.profile: dict[str, Any] | None = None

    def lookup(self, user_id: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.profile)

    def save(self, user_profile: dict[str, Any]) -> None:
        pass


class UnreachableCmabService:
    """What the SDK's DefaultCmabService does when Optimizely's prediction service is down."""

    def get_decision(self, *args: object, **kwargs: object) -> Any:
        raise ConnectionError("CMAB prediction service unreachable")


def sdk_decide(
    sdk: optimizely.Optimizely, call: DecideCall, more_options: list[str]
) -> dict[str, Any]:
    """The SDK's decide_all or decide_for_keys for the call, with its forced decisions and
    forced variations (the latter cleared afterwards: they are the client's, not the user
    context's), the call's options and `more_options`."""
    user = sdk.create_user_context(call.user_id, call.attributes)
    assert user is not None
    for (flag_key, rule_key), variation_key in call.forced.items():
        user.set_forced_decision(
            OptimizelyUserContext.OptimizelyDecisionContext(flag_key, rule_key),
            OptimizelyUserContext.OptimizelyForcedDecision(variation_key),
        )
    for experiment_key, variation_key in call.forced_variations.items():
        assert sdk.set_forced_variation(experiment_key, call.user_id, variation_key)
    options = [*call.options, *more_options]
    try:
        if call.flag_keys is None:
            return user.decide_all(options)
        return user.decide_for_keys(call.flag_keys, options)
    finally:
        for experiment_key in call.forced_variations:
            sdk.set_forced_variation(experiment_key, call.user_id, None)


def forced_variation_ids(config: ProjectConfig, call: DecideCall) -> dict[str, str]:
    """The call's forced variations as trackd holds them: experiment id -> variation id."""
    forced = {}
    for experiment_key, variation_key in call.forced_variations.items():
        experiment = config.experiments_by_key[experiment_key]
        forced[experiment.id] = experiment.variations_by_key[variation_key].id
    return forced


def sdk_decisions(
    sdk: optimizely.Optimizely, profiles: ProfileService, call: DecideCall
) -> dict[str, tuple[Any, ...]]:
    profiles.profile = {
        "user_id": call.user_id,
        "experiment_bucket_map": {
            experiment_id: {"variation_id": variation_id}
            for experiment_id, variation_id in call.profile.items()
        },
    }
    try:
        decisions = sdk_decide(sdk, call, [OptimizelyDecideOption.DISABLE_DECISION_EVENT])
    finally:
        profiles.profile = None
    return {
        key: (d.variation_key, d.enabled, d.rule_key, d.variables) for key, d in decisions.items()
    }


def our_decisions(config: ProjectConfig, call: DecideCall) -> list[FlagDecision]:
    options = {DecideOption(option) for option in call.options}
    lookup = call.profile.get
    forced_variations = forced_variation_ids(config, call)
    if call.flag_keys is None:
        return decide_all(
            config,
            call.user_id,
            call.attributes,
            options,
            forced_decisions=call.forced,
            forced_variation=forced_variations.get,
            sticky_variation=lookup,
        )
    return decide_for_keys(
        config,
        call.flag_keys,
        call.user_id,
        call.attributes,
        options,
        forced_decisions=call.forced,
        forced_variation=forced_variations.get,
        sticky_variation=lookup,
    )


def same_value(ours: object, theirs: object) -> bool:
    """Equal, and of the same kind (True is not 1), float nan and inf included."""
    if type(ours) is not type(theirs):
        return False
    if isinstance(ours, float):
        return ours == theirs or (math.isnan(ours) and math.isnan(theirs))  # type: ignore[arg-type]
    if isinstance(ours, dict):
        return ours.keys() == theirs.keys() and all(  # type: ignore[attr-defined]
            same_value(v, theirs[k])  # type: ignore[index]
            for k, v in ours.items()
        )
    if isinstance(ours, list):
        return len(ours) == len(theirs) and all(  # type: ignore[arg-type]
            same_value(a, b)
            for a, b in zip(ours, theirs, strict=False)  # type: ignore[call-overload]
        )
    return ours == theirs


def compare_case(case: FlagCase, counts: Counter[str], mismatches: list[str]) -> None:
    datafile_json = case.datafile_json
    config = parse_datafile(datafile_json)
    profiles = ProfileService()
    sdk = optimizely.Optimizely(
        datafile_json,
        event_dispatcher=CapturingDispatcher(),
        logger=NoOpLogger(),
        user_profile_service=profiles,
        settings=OptimizelySdkSettings(odp_disabled=True),
        cmab_service=UnreachableCmabService(),  # type: ignore[arg-type]
    )
    try:
        assert sdk.is_valid
        for call in case.calls:
            try:
                expected = sdk_decisions(sdk, profiles, call)
            except Exception as error:
                if not is_known_sdk_crash(error):
                    raise
                counts["sdk_raised_skipped"] += 1
                continue
            ours = our_decisions(config, call)
            actual = {
                d.flag_key: (d.variation_key, d.enabled, d.rule_key, dict(d.variables))
                for d in ours
            }
            for d in ours:
                counts["flag_decisions"] += 1
                counts[f"rule_type_{d.rule_type.value if d.rule_type else 'none'}"] += 1
                counts["enabled" if d.enabled else "disabled"] += 1
                if d.error is not None:
                    counts["errors_cmab" if "CMAB" in d.error else "errors_unknown_flag"] += 1
            counts["calls"] += 1
            # Ours come in request order, once each; the SDK's dict has no order to compare.
            requested = dict.fromkeys(call.flag_keys or config.flag_keys)
            problems = []
            if list(actual) != [key for key in requested if key in expected]:
                problems.append(f"flags: ours {list(actual)}, sdk {sorted(expected)}")
            problems += [
                f"{key}: ours {actual[key]}, sdk {expected[key]}"
                for key in actual.keys() & expected.keys()
                if not same_value(list(actual[key]), list(expected[key]))
            ]
            if problems:
                mismatches.append(f"{call}\n  " + "\n  ".join(problems) + f"\n{datafile_json}")
    finally:
        sdk.close()
    counts["datafiles"] += 1


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_flag_decisions_agree_with_sdk_decide_on_generated_datafiles(
    seed: int, parity_counts: Counter[str]
) -> None:
    generator = FlagsGenerator(seed)
    counts: Counter[str] = Counter()
    mismatches: list[str] = []
    for _ in range(DATAFILES // len(SEEDS)):
        compare_case(generator.flag_case(CALLS_PER_DATAFILE), counts, mismatches)
    parity_counts.update({f"flags_{name}": count for name, count in counts.items()})
    assert not mismatches, (
        f"{len(mismatches)} of {counts['calls']} calls disagree; first:\n"
        + "\n".join(mismatches[:3])
    )
    assert counts["flag_decisions"] >= MIN_CASES // len(SEEDS), counts
    # Every kind of outcome must have been exercised, or the generator has drifted.
    kinds = ("feature-test", "rollout", "holdout", "none")
    for kind in (*(f"rule_type_{k}" for k in kinds), "errors_cmab", "errors_unknown_flag"):
        assert counts[kind] > 0, counts
