"""What a Decide asks of the activation store: every feature test's activation remembered in
one `put_many`, not a `put` per flag (with Redis, a round trip per flag)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from bench.gen_datafile import build_flags
from tests.unit.test_tracker import MemoryEventLog, OutageStore
from trackd.activation import Held, Write
from trackd.datafile import parse_datafile
from trackd.datafile.model import RuleType
from trackd.live import LiveConfig
from trackd.overrides import MemoryOverrideStore
from trackd.tracking import Tracker


class RecordingStore(OutageStore):
    """Records the writes it is asked for; goes down once it has answered `down_after_reads`
    reads of a user's activations (a Redis failing between a Decide's read and its write)."""

    down_after_reads: int | None = None

    def __init__(self) -> None:
        super().__init__(ttl=60.0, max_entries=1000)
        self.writes: list[tuple[str, list[tuple[str, str, bool]]]] = []
        self.reads = 0

    async def put(
        self, user_id: str, experiment_id: str, variation_id: str, *, sticky: bool = True
    ) -> None:
        self.writes.append(("put", [(experiment_id, variation_id, sticky)]))
        await super().put(user_id, experiment_id, variation_id, sticky=sticky)

    async def put_many(self, user_id: str, entries: Sequence[Write]) -> None:
        written = [(e.experiment_id, e.variation_id, e.sticky) for e in entries]
        self.writes.append(("put_many", written))
        await super().put_many(user_id, entries)

    async def held_for_user(self, user_id: str, experiment_ids: Collection[str]) -> dict[str, Held]:
        found = await super().held_for_user(user_id, experiment_ids)
        self.reads += 1
        self.down = self.reads == self.down_after_reads
        return found


def tracker(store: RecordingStore) -> Tracker:
    config = parse_datafile(build_flags(20))  # 20 flags, each with an A/B test
    return Tracker(LiveConfig(config), store, MemoryOverrideStore(), MemoryEventLog(store))


async def test_a_decide_remembers_every_feature_test_in_one_store_call() -> None:
    store = RecordingStore()
    decided = await tracker(store).decide("u1", {}, (), ())
    tested = [
        (d.decision.rule.id, d.decision.variation.id, True)
        for d in decided.decisions
        if d.decision.rule_type is RuleType.FEATURE_TEST
        and d.decision.rule is not None
        and d.decision.variation is not None
    ]
    assert len(tested) >= 2  # else one call would prove nothing
    assert store.writes == [("put_many", tested)]
    assert all([await store.get("u1", e) == Held(v, True) for e, v, _ in tested])


async def test_a_store_down_at_remembering_degrades_attribution_and_remembers_nothing() -> None:
    store = RecordingStore()
    store.down_after_reads = 1
    tracking = tracker(store)
    decided = await tracking.decide("u1", {}, (), ())
    assert decided.attribution_degraded
    assert tracking.degraded_activations == 1
    assert [kind for kind, _ in store.writes] == ["put_many"]  # tried once, refused
    recorded = [
        d.impression_recorded
        for d in decided.decisions
        if d.decision.rule_type is RuleType.FEATURE_TEST
    ]
    assert len(recorded) >= 2 and all(recorded)  # decisions and events go on
    store.down = False
    assert await store.live_for_user("u1") == {}
