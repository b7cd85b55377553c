"""The decision events of a decide, from trackd's own decisions, field for field against what
optimizely-sdk 5.7 dispatches for the same call, on the generated flag datafiles.

test_flag_payload_parity.py builds trackd's events from the SDK's own decision on hand-written
datafiles; test_parity_flags.py compares the decisions alone. Here each generated call
(tests/parity/flags_generator.py) goes through `Tracker.decide` itself, with a fresh memory
activation store and an in-memory event log, so what it records (sendFlagDecisions,
DISABLE_DECISION_EVENT, ENABLED_FLAGS_ONLY still sending the events of the flags it leaves out,
bypassed holdouts, forced decisions and forced variations) is what is compared: as many events,
in the same order, with equal JSON documents apart from the uuid and timestamp (taken from the
SDK's) and the client name and version.

The SDK has no user profile service here and trackd's store starts empty for every call, so
neither is sticky: the calls' stored profiles are what test_parity_flags.py compares.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from optimizely import optimizely
from optimizely.decision.optimizely_decide_option import OptimizelyDecideOption
from optimizely.event.event_processor import ForwardingEventProcessor
from optimizely.helpers.sdk_settings import OptimizelySdkSettings
from optimizely.logger import NoOpLogger

from tests.parity.flags_generator import DecideCall, FlagCase, FlagsGenerator
from tests.parity.test_parity_decisions import is_known_sdk_crash
from tests.parity.test_parity_flags import (
    UnreachableCmabService,
    forced_variation_ids,
    sdk_decide,
)
from tests.parity.test_parity_flags import quiet_sdk as quiet_sdk  # autouse: the SDK's logging
from tests.support.event_log import ListEventLog
from tests.support.oracle import (
    CapturingDispatcher,
    sdk_payload,
    sdk_uuids_and_timestamps,
    trackd_payload,
)
from trackd.activation import MemoryActivationStore
from trackd.datafile import ProjectConfig, parse_datafile
from trackd.decision.flags import DecideOption
from trackd.events.outbox import Receipt
from trackd.events.records import ConversionColumns, Impression, OutboxRecord
from trackd.events.results import ExperimentResults, ResultsConfig, ResultsExperiment
from trackd.live import LiveConfig
from trackd.overrides import MemoryOverrideStore
from trackd.tracking import Decisions, Tracker

DATAFILES = 1200
CALLS_PER_DATAFILE = 8
SEEDS = (20261207, 15)
MIN_DECISIONS = 20_000
# One call in this many also gets DISABLE_DECISION_EVENT (the generator gives only options
# that leave events alone, since test_parity_flags.py adds it to every call).
QUIET_EVERY = 7


class MemoryEventLog(ListEventLog):
    """`ListEventLog` for Decide alone: Track and results are not used here."""

    async def append(
        self, records: Sequence[OutboxRecord] | ConversionColumns, receipt: Receipt | None = None
    ) -> bytes | None:
        assert not isinstance(records, ConversionColumns)
        return await super().append(records, receipt)

    async def results(
        self, config: ResultsConfig, experiment: ResultsExperiment
    ) -> ExperimentResults:
        raise AssertionError("not used")


def sdk_events(
    sdk: optimizely.Optimizely, dispatched: CapturingDispatcher, call: DecideCall, quiet: bool
) -> list[dict[str, Any]]:
    """The payloads the SDK dispatches for the call."""
    before = len(dispatched.events)
    sdk_decide(sdk, call, [OptimizelyDecideOption.DISABLE_DECISION_EVENT] * quiet)
    return [event.params for event in dispatched.events[before:]]


def our_impressions(config: ProjectConfig, call: DecideCall, quiet: bool) -> list[Impression]:
    """What Tracker.decide records for the call, from a fresh activation store."""
    overrides = MemoryOverrideStore()
    log = MemoryEventLog()
    tracker = Tracker(
        LiveConfig(config), MemoryActivationStore(ttl=60.0, max_entries=10_000), overrides, log
    )
    options = {DecideOption(option) for option in call.options}
    if quiet:
        options.add(DecideOption.DISABLE_DECISION_EVENT)

    async def decide() -> Decisions:
        for experiment_id, variation_id in forced_variation_ids(config, call).items():
            await overrides.set_variation(call.user_id, experiment_id, variation_id)
        for (flag_key, rule_key), variation_key in call.forced.items():
            await overrides.set_decision(call.user_id, flag_key, rule_key, variation_key)
        return await tracker.decide(call.user_id, call.attributes, call.flag_keys or (), options)

    decisions = asyncio.run(decide())
    impressions = [record for record in log.records if isinstance(record, Impression)]
    assert len(impressions) == len(log.records)
    # impression_recorded says whether a decision's events were committed (ENABLED_FLAGS_ONLY
    # may leave out the decisions whose events went out).
    if DecideOption.ENABLED_FLAGS_ONLY not in options:
        assert any(d.impression_recorded for d in decisions.decisions) is bool(impressions)
    return impressions


def compare_case(
    case: FlagCase, counts: Counter[str], mismatches: list[str], first_call: int
) -> None:
    datafile_json = case.datafile_json
    config = parse_datafile(datafile_json)
    dispatched = CapturingDispatcher()
    sdk = optimizely.Optimizely(
        datafile_json,
        event_dispatcher=dispatched,
        logger=NoOpLogger(),
        settings=OptimizelySdkSettings(odp_disabled=True),
        cmab_service=UnreachableCmabService(),  # type: ignore[arg-type]
        event_processor=ForwardingEventProcessor(dispatched, logger=NoOpLogger()),
    )
    try:
        assert sdk.is_valid
        for index, call in enumerate(case.calls, start=first_call):
            quiet = index % QUIET_EVERY == 0
            try:
                theirs = sdk_events(sdk, dispatched, call, quiet)
            except Exception as error:
                if not is_known_sdk_crash(error):
                    raise
                counts["sdk_raised_skipped"] += 1
                continue
            ours = our_impressions(config, call, quiet)
            counts["calls"] += 1
            counts["calls_quiet" if quiet else "calls_sending"] += 1
            # Every flag of the datafile decided, those ENABLED_FLAGS_ONLY leaves out included
            # (their events are compared too); unknown keys, which send nothing, are not.
            decided = call.flag_keys or config.flag_keys
            counts["flag_decisions"] += sum(key in config.flags_by_key for key in decided)
            counts["events"] += len(theirs)
            problems = []
            if len(ours) != len(theirs):
                problems.append(
                    f"{len(ours)} events, sdk {len(theirs)}: ours "
                    f"{[(r.flag_key, r.experiment_key) for r in ours]}, sdk "
                    f"{[_metadata(p) for p in theirs]}"
                )
            for position, (record, params) in enumerate(zip(ours, theirs, strict=False)):
                ((uuid, timestamp),) = sdk_uuids_and_timestamps(params)
                mine = trackd_payload([record._replace(uuid=uuid, timestamp=timestamp)])
                if mine != sdk_payload(params):
                    problems.append(f"event {position}: ours {mine}\n  sdk {sdk_payload(params)}")
                else:
                    counts["events_equal"] += 1
                    counts[f"events_{_metadata(params)['rule_type']}"] += 1
            if problems:
                mismatches.append(f"{call}\n  " + "\n  ".join(problems) + f"\n{datafile_json}")
    finally:
        sdk.close()
    counts["datafiles"] += 1


def _metadata(params: dict[str, Any]) -> dict[str, Any]:
    (visitor,) = params["visitors"]
    metadata: dict[str, Any] = visitor["snapshots"][0]["decisions"][0]["metadata"]
    return metadata


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_decide_events_agree_with_sdk_on_generated_datafiles(
    seed: int, parity_counts: Counter[str]
) -> None:
    generator = FlagsGenerator(seed)
    counts: Counter[str] = Counter()
    mismatches: list[str] = []
    for number in range(DATAFILES // len(SEEDS)):
        compare_case(
            generator.flag_case(CALLS_PER_DATAFILE),
            counts,
            mismatches,
            first_call=number * CALLS_PER_DATAFILE,
        )
    parity_counts.update({f"flag_events_{name}": count for name, count in counts.items()})
    assert not mismatches, (
        f"{len(mismatches)} of {counts['calls']} calls disagree; first:\n"
        + "\n".join(mismatches[:3])
    )
    assert counts["flag_decisions"] >= MIN_DECISIONS // len(SEEDS), counts
    # Every kind of event, and calls that send none, must have been compared, or the
    # generator has drifted away from what this test is for.
    for kind in ("events_feature-test", "events_rollout", "events_holdout", "calls_quiet"):
        assert counts[kind] > 0, counts
