"""Tracker.decide against the memory store and an in-memory event log: what a flag decision
commits and remembers, in which order, and what happens when the outbox or the store fails.

tests/data/flags_datafile.json: "u1" is bucketed into treatment of checkout_ab (flag
checkout_redesign), "qa_whitelisted" is whitelisted into it; "free_shipping" is a rollout.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_tracker import MemoryEventLog, OutageOverrides, OutageStore
from trackd.activation import Held
from trackd.datafile import parse_datafile
from trackd.decision.flags import DecideOption
from trackd.events.outbox import Receipt
from trackd.events.records import ConversionColumns, OutboxRecord
from trackd.live import LiveConfig
from trackd.tracking import Tracker, TrackInput

DOCUMENT: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "data" / "flags_datafile.json").read_text()
)
CHECKOUT = "checkout_redesign"
AB_TEST_ID = "7301"
CONTROL, TREATMENT = "v_control", "v_treatment"


class CountingEventLog(MemoryEventLog):
    def __init__(self, store: OutageStore) -> None:
        super().__init__(store)
        self.appends = 0

    async def append(
        self, records: Sequence[OutboxRecord] | ConversionColumns, receipt: Receipt | None = None
    ) -> bytes | None:
        self.appends += 1
        return await super().append(records, receipt)


class Parts:
    """`reads_together`: as in test_tracker.Parts, the stores say they are remote."""

    def __init__(self, document: dict[str, Any] = DOCUMENT, reads_together: bool = False) -> None:
        self.store = OutageStore(ttl=60.0, max_entries=1000)
        self.log = CountingEventLog(self.store)
        self.overrides = OutageOverrides()
        self.store.remote = self.overrides.remote = reads_together
        self.tracker = Tracker(
            LiveConfig(parse_datafile(json.dumps(document))),
            self.store,
            self.overrides,
            self.log,
        )

    async def decide(self, user_id: str, *keys: str, options: Sequence[DecideOption] = ()) -> Any:
        return await self.tracker.decide(user_id, {"country": "US"}, keys, options)


@pytest.fixture(params=[False, True], ids=["in_turn", "together"])
def parts(request: pytest.FixtureRequest) -> Parts:
    return Parts(reads_together=request.param)


async def test_the_event_is_committed_before_the_activation_is_remembered(parts: Parts) -> None:
    decided = await parts.decide("u1", CHECKOUT)
    assert decided.decisions[0].impression_recorded
    assert parts.log.held_at_commit == [None]
    assert await parts.store.get("u1", AB_TEST_ID) == Held(TREATMENT, sticky=True)
    again = await parts.decide("u1", CHECKOUT)
    assert not again.decisions[0].impression_recorded
    assert len(parts.log.impressions) == 1


async def test_a_refused_event_remembers_nothing_so_the_next_decide_records_it(
    parts: Parts,
) -> None:
    parts.log.full = True
    refused = await parts.decide("u1", CHECKOUT)
    assert refused.decisions[0].decision.variation_key == "treatment"
    assert not refused.decisions[0].impression_recorded
    assert await parts.store.get("u1", AB_TEST_ID) is None
    parts.log.full = False
    assert (await parts.decide("u1", CHECKOUT)).decisions[0].impression_recorded


async def test_with_the_store_down_decisions_and_events_go_on_unremembered(
    parts: Parts,
) -> None:
    parts.store.down = True
    decided = await parts.decide("u1", CHECKOUT)
    assert decided.attribution_degraded
    assert decided.decisions[0].decision.variation_key == "treatment"
    assert decided.decisions[0].impression_recorded
    parts.store.down = False
    assert await parts.store.get("u1", AB_TEST_ID) is None
    assert parts.tracker.degraded_activations == 1


async def test_a_forced_decision_attributes_but_does_not_stick_once_removed(parts: Parts) -> None:
    await parts.tracker.set_forced_decision("u1", CHECKOUT, "checkout_ab", "control")
    forced = await parts.decide("u1", CHECKOUT)
    assert forced.decisions[0].decision.variation_key == "control"
    assert await parts.store.get("u1", AB_TEST_ID) == Held(CONTROL, sticky=False)
    repeat = await parts.decide("u1", CHECKOUT)
    assert not repeat.decisions[0].impression_recorded  # the same forcing live again
    tracked = await parts.tracker.track(TrackInput("purchase", "u1", {}, {}))
    assert [a.variation_key for a in tracked.attributions] == ["control"]
    assert await parts.tracker.remove_forced_decision("u1", CHECKOUT, "checkout_ab")
    fresh = await parts.decide("u1", CHECKOUT)
    assert fresh.decisions[0].decision.variation_key == "treatment"
    assert fresh.decisions[0].impression_recorded
    assert await parts.store.get("u1", AB_TEST_ID) == Held(TREATMENT, sticky=True)


async def test_with_the_override_store_down_decide_goes_on_unforced_and_remembers_nothing(
    parts: Parts,
) -> None:
    await parts.tracker.set_forced_decision("u1", CHECKOUT, "checkout_ab", "control")
    parts.overrides.down = True
    unforced = await parts.decide("u1", CHECKOUT)
    assert unforced.attribution_degraded
    assert unforced.decisions[0].decision.variation_key == "treatment"
    assert unforced.decisions[0].impression_recorded  # at least once
    assert await parts.store.get("u1", AB_TEST_ID) is None  # as with the activation store down
    parts.overrides.down = False
    forced = await parts.decide("u1", CHECKOUT)
    assert not forced.attribution_degraded
    assert forced.decisions[0].decision.variation_key == "control"


async def test_a_returning_user_sticks_and_sends_nothing_again(parts: Parts) -> None:
    first = await parts.decide("u1", CHECKOUT)
    again = await parts.decide("u1", CHECKOUT)
    assert first.decisions[0].impression_recorded and not again.decisions[0].impression_recorded
    assert again.decisions[0].decision.variation_key == "treatment"
    assert not again.attribution_degraded
    parts.store.down = parts.overrides.down = True
    down = await parts.decide("u1", CHECKOUT)
    assert down.attribution_degraded and down.decisions[0].impression_recorded
    assert len(parts.log.impressions) == 2


async def test_a_whitelisted_user_is_remembered_not_sticky(parts: Parts) -> None:
    await parts.decide("qa_whitelisted", CHECKOUT)
    assert await parts.store.get("qa_whitelisted", AB_TEST_ID) == Held(TREATMENT, sticky=False)


async def test_every_event_of_one_call_is_one_commit_and_rollouts_are_not_remembered() -> None:
    document = copy.deepcopy(DOCUMENT)
    document["sendFlagDecisions"] = True
    parts = Parts(document)
    decided = await parts.decide("u1")
    assert [d.impression_recorded for d in decided.decisions] == [True, True]
    assert parts.log.appends == 1 and len(parts.log.impressions) == 2
    assert await parts.store.live_for_user("u1") == {AB_TEST_ID: TREATMENT}


async def test_disable_decision_event_commits_and_remembers_nothing(parts: Parts) -> None:
    await parts.decide("u1", options=[DecideOption.DISABLE_DECISION_EVENT])
    assert parts.log.appends == 0
    assert await parts.store.live_for_user("u1") == {}


async def test_enabled_flags_only_still_sends_the_events_of_the_flags_it_leaves_out() -> None:
    """As the SDK: every flag is decided and its event sent, then disabled ones are dropped."""
    document = copy.deepcopy(DOCUMENT)
    document["sendFlagDecisions"] = True
    parts = Parts(document)
    decided = await parts.tracker.decide("u1", {}, (), [DecideOption.ENABLED_FLAGS_ONLY])
    assert [d.decision.flag_key for d in decided.decisions] == [CHECKOUT]
    assert [(i.flag_key, i.enabled) for i in parts.log.impressions] == [
        (CHECKOUT, True),
        ("free_shipping", False),
    ]
