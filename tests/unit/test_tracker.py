"""Tracker alone: the memory activation store and an in-memory event log, no gRPC, no SQLite.

What Activate and Track promise whatever the parts: the impression is committed before the
activation is remembered, a forced or whitelisted decision attributes but does not stick,
conversions are attributed to live activations, and a store outage degrades attribution
without stopping decisions or events.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from pathlib import Path

import pytest

from tests.support.event_log import ListEventLog
from trackd.activation import Held, Lookup, MemoryActivationStore, Sticky, Write
from trackd.datafile import ProjectConfig, parse_datafile
from trackd.datafile.model import Experiment
from trackd.decision.engine import Reason
from trackd.errors import (
    ActivationStoreUnavailable,
    InvalidArgument,
    InvalidTag,
    NotFound,
    OutboxFull,
    OverrideStoreUnavailable,
    UnknownEvent,
)
from trackd.events.outbox import BatchKey, Receipt
from trackd.events.records import Conversion, ConversionColumns, Impression, Record
from trackd.events.results import ExperimentResults
from trackd.live import LiveConfig
from trackd.overrides import MemoryOverrideStore, UserOverrides
from trackd.tracking import BatchItem, EventLog, SharedResults, Tracker, TrackInput

DATAFILE = Path(__file__).parent.parent / "data" / "datafile.json"
EXPERIMENT = "ab_running"  # id 40001: variation_a 42001, variation_b 42002; vip_user -> b
OTHER = {"variation_a": "variation_b", "variation_b": "variation_a"}


class MemoryEventLog(ListEventLog):
    """`EventLog` in a list. It notes what the activation store held for each impression's
    user and experiment when the impression was committed, and refuses appends while
    `full`."""

    def __init__(self, store: MemoryActivationStore) -> None:
        super().__init__()
        self.held_at_commit: list[Held | None] = []
        self.full = False
        self.receipts: dict[BatchKey, bytes] = {}  # no window: a key is remembered for good
        self._store = store

    async def append(
        self, records: Sequence[Record] | ConversionColumns, receipt: Receipt | None = None
    ) -> bytes | None:
        if self.full:
            raise OutboxFull(len(self.records))
        if receipt is not None:
            if receipt.key in self.receipts:
                return self.receipts[receipt.key]
            self.receipts[receipt.key] = receipt.ack
        batch = self.expanded(records)
        for record in batch:
            if isinstance(record, Impression):
                try:
                    held = await self._store.get(record.user_id, record.experiment_id)
                except ActivationStoreUnavailable:
                    held = None
                self.held_at_commit.append(held)
        self.records.extend(batch)
        return None

    @property
    def impressions(self) -> list[Impression]:
        return [r for r in self.records if isinstance(r, Impression)]

    @property
    def conversions(self) -> list[Conversion]:
        return [r for r in self.records if isinstance(r, Conversion)]


class OutageStore(MemoryActivationStore):
    """The memory store, unreachable while `down` (as Redis can be)."""

    down = False

    def _check(self) -> None:
        if self.down:
            raise ActivationStoreUnavailable

    async def get(self, user_id: str, experiment_id: str) -> Held | None:
        self._check()
        return await super().get(user_id, experiment_id)

    async def put(
        self, user_id: str, experiment_id: str, variation_id: str, *, sticky: bool = True
    ) -> None:
        self._check()
        await super().put(user_id, experiment_id, variation_id, sticky=sticky)

    async def put_many(self, user_id: str, entries: Sequence[Write]) -> None:
        self._check()
        await super().put_many(user_id, entries)

    async def refresh_or_put(
        self, user_id: str, experiment_id: str, variation_id: str | None
    ) -> Sticky:
        self._check()
        return await super().refresh_or_put(user_id, experiment_id, variation_id)

    async def live_for_user(
        self, user_id: str, experiment_ids: Collection[str] | None = None
    ) -> dict[str, str]:
        self._check()
        return await super().live_for_user(user_id, experiment_ids)

    async def live_for_users(self, lookups: Sequence[Lookup]) -> list[dict[str, str]]:
        self._check()
        return await super().live_for_users(lookups)

    async def held_for_user(self, user_id: str, experiment_ids: Collection[str]) -> dict[str, Held]:
        self._check()
        return await super().held_for_user(user_id, experiment_ids)


class OutageOverrides(MemoryOverrideStore):
    """The memory override store, unreachable for reads while `down` (as Redis can be)."""

    down = False

    async def get_variation(self, user_id: str, experiment_id: str) -> str | None:
        if self.down:
            raise OverrideStoreUnavailable("down")
        return await super().get_variation(user_id, experiment_id)

    async def for_user(self, user_id: str) -> UserOverrides:
        if self.down:
            raise OverrideStoreUnavailable("down")
        return await super().for_user(user_id)


class Parts:
    """`reads_together`: the stores say they are remote, as Redis's do, so the tracker sends
    its two reads together: every behaviour here holds either way."""

    def __init__(self, reads_together: bool = False) -> None:
        self.config: ProjectConfig = parse_datafile(DATAFILE.read_bytes())
        self.store = OutageStore(ttl=60.0, max_entries=1000)
        self.log = MemoryEventLog(self.store)
        self.forced = OutageOverrides()
        self.store.remote = self.forced.remote = reads_together
        self.tracker = Tracker(LiveConfig(self.config), self.store, self.forced, self.log)

    @property
    def experiment_id(self) -> str:
        return self.config.experiments_by_key[EXPERIMENT].id

    def variation_id(self, key: str) -> str:
        return self.config.experiments_by_key[EXPERIMENT].variations_by_key[key].id

    async def bucketed(self, user_id: str) -> str:
        decision, _ = await self.tracker.get_variation(EXPERIMENT, user_id, {})
        assert decision.variation is not None
        return decision.variation.key


@pytest.fixture(params=[False, True], ids=["in_turn", "together"])
def parts(request: pytest.FixtureRequest) -> Parts:
    return Parts(reads_together=request.param)


def conversion(user_id: str, event_key: str = "my_conversion") -> TrackInput:
    return TrackInput(event_key, user_id, {}, {})


async def test_a_bucketed_user_gets_one_impression_then_sticks(parts: Parts) -> None:
    first = await parts.tracker.activate(EXPERIMENT, "u1", {})
    again = await parts.tracker.activate(EXPERIMENT, "u1", {})
    assert (first.impression_recorded, again.impression_recorded) == (True, False)
    assert first.decision.reason is Reason.BUCKETED
    assert again.decision.reason is Reason.STICKY
    assert again.decision.variation == first.decision.variation
    assert len(parts.log.impressions) == 1
    assert first.decision.variation is not None
    held = await parts.store.get("u1", parts.experiment_id)
    assert held == Held(first.decision.variation.id, sticky=True)


async def test_the_impression_is_committed_before_the_activation_is_stored(
    parts: Parts,
) -> None:
    await parts.tracker.activate(EXPERIMENT, "u1", {})
    assert parts.log.held_at_commit == [None]  # nothing remembered when it was committed
    assert await parts.store.get("u1", parts.experiment_id) is not None


async def test_a_refused_impression_leaves_no_activation_so_the_next_activate_records_it(
    parts: Parts,
) -> None:
    parts.log.full = True
    refused = await parts.tracker.activate(EXPERIMENT, "u1", {})
    assert refused.decision.variation is not None  # decisions go on
    assert not refused.impression_recorded
    assert await parts.store.get("u1", parts.experiment_id) is None
    parts.log.full = False
    retried = await parts.tracker.activate(EXPERIMENT, "u1", {})
    assert retried.impression_recorded
    assert len(parts.log.impressions) == 1


async def test_a_forced_variation_attributes_but_does_not_stick_once_the_forcing_ends(
    parts: Parts,
) -> None:
    bucketed = await parts.bucketed("u1")
    forced = OTHER[bucketed]
    await parts.tracker.set_forced_variation(EXPERIMENT, "u1", forced)
    activation = await parts.tracker.activate(EXPERIMENT, "u1", {})
    assert activation.decision.reason is Reason.FORCED
    assert await parts.store.get("u1", parts.experiment_id) == Held(
        parts.variation_id(forced), sticky=False
    )
    repeat = await parts.tracker.activate(EXPERIMENT, "u1", {})
    assert not repeat.impression_recorded  # the same forcing as the live one
    tracked = await parts.tracker.track(conversion("u1"))
    assert [a.variation_key for a in tracked.attributions] == [forced]

    await parts.tracker.set_forced_variation(EXPERIMENT, "u1", "")
    assert await parts.bucketed("u1") == bucketed  # GetVariation ignores the forced one
    after = await parts.tracker.activate(EXPERIMENT, "u1", {})
    assert after.decision.reason is Reason.BUCKETED
    assert after.impression_recorded
    assert [i.variation_key for i in parts.log.impressions] == [forced, bucketed]
    assert await parts.store.get("u1", parts.experiment_id) == Held(
        parts.variation_id(bucketed), sticky=True
    )


async def test_a_forced_variation_replaces_a_sticky_activation_and_repeats_once_live(
    parts: Parts,
) -> None:
    sticky = await parts.tracker.activate(EXPERIMENT, "u1", {})
    assert sticky.decision.variation is not None
    forced = OTHER[sticky.decision.variation.key]
    await parts.tracker.set_forced_variation(EXPERIMENT, "u1", forced)
    activation = await parts.tracker.activate(EXPERIMENT, "u1", {})
    assert activation.decision.reason is Reason.FORCED
    assert activation.impression_recorded
    held = Held(parts.variation_id(forced), sticky=False)
    assert await parts.store.get("u1", parts.experiment_id) == held
    repeat = await parts.tracker.activate(EXPERIMENT, "u1", {})
    assert (repeat.decision.reason, repeat.impression_recorded) == (Reason.FORCED, False)
    assert len(parts.log.impressions) == 2


async def test_a_forced_variation_beats_the_whitelist_and_ends_back_in_it(parts: Parts) -> None:
    await parts.tracker.set_forced_variation(EXPERIMENT, "vip_user", "variation_a")
    forced = await parts.tracker.activate(EXPERIMENT, "vip_user", {})
    assert forced.decision.reason is Reason.FORCED
    repeat = await parts.tracker.activate(EXPERIMENT, "vip_user", {})
    assert not repeat.impression_recorded
    await parts.tracker.set_forced_variation(EXPERIMENT, "vip_user", "")
    whitelisted = await parts.tracker.activate(EXPERIMENT, "vip_user", {})
    assert whitelisted.decision.reason is Reason.WHITELISTED
    assert whitelisted.impression_recorded
    assert [i.variation_key for i in parts.log.impressions] == ["variation_a", "variation_b"]
    assert await parts.store.get("vip_user", parts.experiment_id) == Held(
        parts.variation_id("variation_b"), sticky=False
    )


async def test_with_the_override_store_down_activate_decides_unforced_and_remembers(
    parts: Parts,
) -> None:
    bucketed = await parts.bucketed("u1")
    await parts.tracker.set_forced_variation(EXPERIMENT, "u1", OTHER[bucketed])
    parts.forced.down = True
    activation = await parts.tracker.activate(EXPERIMENT, "u1", {})
    assert activation.attribution_degraded
    assert activation.decision.reason is Reason.BUCKETED
    assert activation.impression_recorded
    held = Held(parts.variation_id(bucketed), sticky=True)
    assert await parts.store.get("u1", parts.experiment_id) == held  # its store was up
    sticky = await parts.tracker.activate(EXPERIMENT, "u1", {})
    assert (sticky.decision.reason, sticky.attribution_degraded) == (Reason.STICKY, True)
    parts.forced.down = False
    back = await parts.tracker.activate(EXPERIMENT, "u1", {})
    assert (back.decision.reason, back.attribution_degraded) == (Reason.FORCED, False)
    paused = await parts.tracker.activate("paused_exp", "u1", {})
    assert paused.decision.reason is Reason.NOT_RUNNING and not paused.attribution_degraded
    parts.forced.down = True
    paused = await parts.tracker.activate("paused_exp", "u1", {})
    assert paused.decision.reason is Reason.NOT_RUNNING and paused.attribution_degraded


async def test_with_both_stores_down_activate_decides_and_records_at_least_once(
    parts: Parts,
) -> None:
    await parts.tracker.activate(EXPERIMENT, "u1", {})
    await parts.tracker.set_forced_variation(EXPERIMENT, "vip_user", "variation_a")
    parts.store.down = parts.forced.down = True
    for user in ("u1", "vip_user"):
        activation = await parts.tracker.activate(EXPERIMENT, user, {})
        assert activation.attribution_degraded and activation.impression_recorded
        assert activation.decision.reason in {Reason.BUCKETED, Reason.WHITELISTED}
    assert parts.tracker.degraded_activations == 2
    parts.store.down = parts.forced.down = False
    assert (await parts.tracker.activate(EXPERIMENT, "u1", {})).decision.reason is Reason.STICKY


async def test_a_whitelisted_user_is_remembered_as_not_sticky(parts: Parts) -> None:
    activation = await parts.tracker.activate(EXPERIMENT, "vip_user", {})
    assert activation.decision.reason is Reason.WHITELISTED
    assert await parts.store.get("vip_user", parts.experiment_id) == Held(
        parts.variation_id("variation_b"), sticky=False
    )


async def test_conversions_are_attributed_to_live_activations_only(parts: Parts) -> None:
    activated = await parts.tracker.activate(EXPERIMENT, "u1", {})
    assert activated.decision.variation is not None
    variation = activated.decision.variation
    tracked = await parts.tracker.track(conversion("u1"))
    assert [(a.experiment_key, a.variation_id) for a in tracked.attributions] == [
        (EXPERIMENT, variation.id)
    ]
    everyone = await parts.tracker.track(conversion("u1", "signup"))  # lists no experiment
    assert [a.experiment_key for a in everyone.attributions] == [EXPERIMENT]
    stranger = await parts.tracker.track(conversion("u2"))
    assert stranger.attributions == ()
    assert [c.attributions for c in parts.log.conversions] == [
        ((parts.experiment_id, variation.id),),
        ((parts.experiment_id, variation.id),),
        (),
    ]
    assert [c.uuid for c in parts.log.conversions] == [
        tracked.uuid,
        everyone.uuid,
        stranger.uuid,
    ]

    batch = await parts.tracker.track_batch([conversion("u1"), conversion("u2")])
    assert (batch.accepted, batch.attributed, batch.attribution_unknown) == (2, 1, False)
    assert [c.attributions for c in parts.log.conversions[-2:]] == [
        ((parts.experiment_id, variation.id),),
        (),
    ]


async def test_a_batch_stores_each_valid_event_as_track_does_and_reports_the_rest_by_index(
    parts: Parts,
) -> None:
    """Events sharing maps in every combination (the same tags with other attributes or
    another event, the same maps again), invalid tags among them, parse errors and unknown
    events: each valid one is stored, in order, as Track stores it alone, and every other
    is reported at its index."""
    await parts.tracker.activate(EXPERIMENT, "u1", {})
    tags = {"revenue": 5, "value": 2.0}
    nan_tags = {"value": math.nan}
    ipad = {"device": "iPad"}
    items: list[BatchItem] = [
        TrackInput("my_conversion", "u1", ipad, tags),
        TrackInput("my_conversion", "u2", {"device": "iPhone"}, tags),
        TrackInput("signup", "u1", ipad, tags),
        TrackInput("my_conversion", "u3", ipad, nan_tags),
        InvalidArgument("not a valid protobuf message"),
        TrackInput("no_such_event", "u1", ipad, tags),
        TrackInput("signup", "u5", {}, nan_tags),
        TrackInput("my_conversion", "u1", ipad, tags),
    ]
    outcome = await parts.tracker.track_batch(items)
    assert [(index, type(error)) for index, error in outcome.errors] == [
        (3, InvalidTag),
        (4, InvalidArgument),
        (5, UnknownEvent),
        (6, InvalidTag),
    ]
    assert (outcome.accepted, outcome.attributed) == (4, 3)
    streamed = parts.log.conversions
    for position in (0, 1, 2, 7):
        item = items[position]
        assert isinstance(item, TrackInput)
        await parts.tracker.track(item)
    alone = parts.log.conversions[len(streamed) :]

    def comparable(c: Conversion) -> Conversion:
        return c._replace(uuid="", timestamp=0)

    assert [comparable(c) for c in streamed] == [comparable(c) for c in alone]
    assert [c.user_id for c in streamed] == ["u1", "u2", "u1", "u1"]


async def test_a_batch_of_plain_tuples_with_only_an_unknown_event_reports_it_by_index(
    parts: Parts,
) -> None:
    """A batch as trackd.rpc.wire reads it (plain tuples, no parse error) whose one fault is an
    unknown event key: that event is reported at its index and the others are stored."""
    ipad = {"device": "iPad"}
    tags: dict[str, object] = {}
    items: list[BatchItem] = [
        ("signup", "u1", ipad, tags),
        ("no_such_event", "u2", ipad, tags),
        ("signup", "u3", ipad, tags),
    ]
    outcome = await parts.tracker.track_batch(items)
    assert [(index, type(error)) for index, error in outcome.errors] == [(1, UnknownEvent)]
    assert outcome.accepted == 2
    assert [c.user_id for c in parts.log.conversions] == ["u1", "u3"]


async def test_a_resent_batch_key_answers_the_first_commit_and_stores_nothing(
    parts: Parts,
) -> None:
    await parts.tracker.activate(EXPERIMENT, "u1", {})
    key = BatchKey("producer-1", 7)
    batch = [conversion("u1"), conversion("u2"), conversion("u3", event_key="no_such_event")]
    first = await parts.tracker.track_batch(batch, key)
    stored = len(parts.log.conversions)

    parts.store.down = True  # the resend's own attribution would differ: it must not matter
    again = await parts.tracker.track_batch(batch, key)

    assert (first.accepted, first.attributed, first.duplicate) == (2, 1, False)
    assert (again.accepted, again.attributed, again.duplicate) == (2, 1, True)
    assert not again.attribution_unknown
    # A resend's errors keep their index, message and status family (what the wire carries).
    assert [(i, str(e)) for i, e in again.errors] == [(i, str(e)) for i, e in first.errors]
    assert [type(e) for _, e in again.errors] == [NotFound]
    assert len(parts.log.conversions) == stored == 2
    other = await parts.tracker.track_batch(batch, BatchKey("producer-2", 7))
    assert not other.duplicate and len(parts.log.conversions) == 4


async def test_with_the_store_down_decisions_and_events_go_on_without_attribution(
    parts: Parts,
) -> None:
    await parts.tracker.activate(EXPERIMENT, "u1", {})
    parts.store.down = True

    degraded = await parts.tracker.activate(EXPERIMENT, "u1", {})
    assert degraded.decision.variation is not None
    assert degraded.attribution_degraded
    assert degraded.impression_recorded  # at least once: stickiness is unknown
    tracked = await parts.tracker.track(conversion("u1"))
    assert tracked.attribution_unknown and tracked.attributions == ()
    batch = await parts.tracker.track_batch([conversion("u1"), conversion("u2")])
    assert (batch.accepted, batch.attributed, batch.attribution_unknown) == (2, 0, True)
    assert (parts.tracker.degraded_activations, parts.tracker.unattributed_tracks) == (1, 3)
    assert len(parts.log.impressions) == 2 and len(parts.log.conversions) == 3

    parts.store.down = False
    back = await parts.tracker.track(conversion("u1"))
    assert not back.attribution_unknown and len(back.attributions) == 1


class FleetOf:
    """`SharedResults` answering fixed results, noting the event log it was handed."""

    def __init__(self, answer: ExperimentResults) -> None:
        self.answer = answer
        self.logs: list[EventLog] = []

    async def results(
        self, outbox: EventLog, config: ProjectConfig, experiment: Experiment
    ) -> tuple[ExperimentResults, bool]:
        self.logs.append(outbox)
        return self.answer, True


async def test_results_are_the_fleets_when_there_is_one(parts: Parts) -> None:
    answer = ExperimentResults(EXPERIMENT, parts.experiment_id, ())
    fleet: SharedResults = FleetOf(answer)
    tracker = Tracker(LiveConfig(parts.config), parts.store, parts.forced, parts.log, fleet=fleet)
    results = await tracker.results(EXPERIMENT)
    assert (results.results, results.fleet_wide) == (answer, True)
    assert isinstance(fleet, FleetOf) and fleet.logs == [parts.log]
    alone = await parts.tracker.results(EXPERIMENT)
    assert (alone.results, alone.fleet_wide) == (answer, False)
