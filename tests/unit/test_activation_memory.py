"""MemoryActivationStore: TTL, stickiness, LRU bound, attribution lookups, datafile retain."""

from __future__ import annotations

import asyncio
from typing import NamedTuple

import pytest

from trackd.activation import ActivationStats, ActivationStore, Held, MemoryActivationStore, Sticky
from trackd.activation.memory import default_shards


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, *, ttl: float = 10.0, max_entries: int = 1000) -> MemoryActivationStore:
    return MemoryActivationStore(ttl=ttl, max_entries=max_entries, clock=clock)


def test_memory_store_satisfies_the_interface(clock: FakeClock) -> None:
    store: ActivationStore = make(clock)
    assert isinstance(store, MemoryActivationStore)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ttl": 0},
        {"ttl": -1.0},
        {"max_entries": 0},
        {"sweep_budget": 0},
        {"purge_chunk": 0},
        {"shards": 0},
        {"shards": 3},
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        MemoryActivationStore(**kwargs)  # type: ignore[arg-type]


async def test_activation_is_returned_within_the_ttl(clock: FakeClock) -> None:
    store = make(clock)
    await store.put("u1", "e1", "v1")
    clock.advance(9.999)
    assert await store.get("u1", "e1") == Held("v1", True)


async def test_activation_expires_once_the_ttl_has_passed(clock: FakeClock) -> None:
    store = make(clock)
    await store.put("u1", "e1", "v1")
    clock.advance(10.0)
    assert await store.get("u1", "e1") is None
    assert await store.live_for_user("u1") == {}


async def test_put_refreshes_the_expiry_to_ttl_after_the_last_put(clock: FakeClock) -> None:
    store = make(clock)
    await store.put("u1", "e1", "v1")
    clock.advance(8)
    await store.put("u1", "e1", "v1")
    clock.advance(8)
    assert await store.get("u1", "e1") == Held("v1", True)
    clock.advance(2)
    assert await store.get("u1", "e1") is None


async def test_get_never_refreshes_the_expiry(clock: FakeClock) -> None:
    store = make(clock)
    await store.put("u1", "e1", "v1")
    for _ in range(9):
        clock.advance(1)
        assert await store.get("u1", "e1") == Held("v1", True)
        assert await store.live_for_user("u1", ["e1"]) == {"e1": "v1"}
    clock.advance(1)
    assert await store.get("u1", "e1") is None


async def test_user_ids_containing_the_key_separator_do_not_collide(clock: FakeClock) -> None:
    store = make(clock)
    await store.put("a\x1f0", "e1", "v1")
    await store.put("a", "e0", "v0")
    await store.put("a", "e1", "v9")
    assert await store.live_for_user("a\x1f0") == {"e1": "v1"}
    assert await store.live_for_user("a") == {"e0": "v0", "e1": "v9"}
    assert await store.get("", "e1") is None


async def test_refresh_or_put_keeps_the_live_variation_and_refreshes_it(clock: FakeClock) -> None:
    store = make(clock)
    await store.put("u1", "e1", "v1")
    clock.advance(9)
    assert await store.refresh_or_put("u1", "e1", "v2") == Sticky("v1", True)
    clock.advance(9)
    assert await store.get("u1", "e1") == Held("v1", True)


async def test_refresh_or_put_decides_afresh_after_expiry(clock: FakeClock) -> None:
    store = make(clock)
    await store.put("u1", "e1", "v1")
    clock.advance(10)
    assert await store.refresh_or_put("u1", "e1", "v2") == Sticky("v2", False)
    assert await store.get("u1", "e1") == Held("v2", True)


async def test_least_recently_activated_entry_is_evicted_at_the_cap(clock: FakeClock) -> None:
    store = make(clock, max_entries=3)
    await store.put("u1", "e1", "v1")
    await store.put("u2", "e1", "v1")
    await store.put("u3", "e1", "v1")
    await store.put("u1", "e1", "v1")  # u1 is now the most recent
    await store.put("u4", "e1", "v1")
    assert await store.get("u2", "e1") is None
    assert [await store.get(u, "e1") for u in ("u1", "u3", "u4")] == [Held("v1", True)] * 3
    stats = await store.stats()
    assert (stats.entries, stats.evictions) == (3, 1)


async def test_reads_do_not_protect_an_entry_from_eviction(clock: FakeClock) -> None:
    store = make(clock, max_entries=2)
    await store.put("u1", "e1", "v1")
    await store.put("u2", "e1", "v1")
    assert await store.get("u1", "e1") == Held("v1", True)
    await store.put("u3", "e1", "v1")
    assert await store.get("u1", "e1") is None


async def test_refresh_or_put_hit_protects_an_entry_from_eviction(clock: FakeClock) -> None:
    store = make(clock, max_entries=2)
    await store.put("u1", "e1", "v1")
    await store.put("u2", "e1", "v1")
    await store.refresh_or_put("u1", "e1", None)
    await store.put("u3", "e1", "v1")
    assert await store.get("u1", "e1") == Held("v1", True)
    assert await store.get("u2", "e1") is None


async def test_an_expired_entry_at_the_cap_counts_as_an_expiry_not_an_eviction(
    clock: FakeClock,
) -> None:
    store = MemoryActivationStore(ttl=10, max_entries=2, clock=clock, sweep_budget=1)
    await store.put("u1", "e1", "v1")
    clock.advance(5)
    await store.put("u2", "e1", "v1")
    clock.advance(6)  # u1 expired, u2 live
    await store.put("u3", "e1", "v1")
    stats = await store.stats()
    assert (stats.evictions, stats.expiries, stats.entries) == (0, 1, 2)


async def test_live_for_user_with_none_returns_every_live_experiment(clock: FakeClock) -> None:
    store = make(clock)
    await store.put("u1", "e1", "v1")
    clock.advance(5)
    await store.put("u1", "e2", "v2")
    await store.put("u2", "e3", "v3")
    assert await store.live_for_user("u1") == {"e1": "v1", "e2": "v2"}
    clock.advance(5)
    assert await store.live_for_user("u1", None) == {"e2": "v2"}


async def test_retain_no_longer_counts_dropped_entries(clock: FakeClock) -> None:
    store = make(clock)
    await store.put("u1", "e1", "v1")
    await store.put("u2", "e1", "v2")
    await store.put("u1", "e2", "v3")
    assert await store.retain(lambda experiment_id, _: experiment_id != "e1") == 2
    assert (await store.stats()).entries == 1


async def test_retain_reclaims_the_memory_of_dropped_entries(clock: FakeClock) -> None:
    store = MemoryActivationStore(ttl=10, clock=clock, purge_chunk=7)
    for i in range(100):
        await store.put(f"u{i}", "e1" if i % 4 else "e0", "v1")
    assert await store.retain(lambda experiment_id, _: experiment_id == "e0") == 75
    assert len(store) == 25
    assert (await store.stats()).entries == 25
    assert await store.live_for_user("u0") == {"e0": "v1"}


async def test_calls_during_retain_see_dropped_entries_gone_and_keep_lru_order(
    clock: FakeClock,
) -> None:
    store = MemoryActivationStore(ttl=100, max_entries=10, clock=clock, purge_chunk=2)
    for i in range(10):
        await store.put(f"u{i}", "keep" if i % 2 == 0 else "drop", "v1")
        clock.advance(1)
    retaining = asyncio.create_task(store.retain(lambda experiment_id, _: experiment_id == "keep"))
    await asyncio.sleep(0)  # retain has retired the codes and moved its first chunk
    assert not retaining.done()
    assert await store.get("u3", "drop") is None
    assert await store.refresh_or_put("u0", "keep", None) == Sticky("v1", True)
    await store.put("n1", "keep", "v1")
    assert await store.live_for_user("u2") == {"keep": "v1"}
    assert await retaining == 5
    assert len(store) == 6
    for i in range(4):
        await store.put(f"x{i}", "keep", "v1")  # fills to the cap
    order = ["u2", "u4", "u6", "u8", "u0", "n1"]  # expected, least recently activated first
    for i, user in enumerate(order):
        await store.put(f"y{i}", "keep", "v1")
        assert await store.get(user, "keep") is None
        assert all([await store.get(later, "keep") == Held("v1", True) for later in order[i + 1 :]])


async def test_calls_reclaim_expired_entries_a_bounded_number_at_a_time(
    clock: FakeClock,
) -> None:
    store = MemoryActivationStore(ttl=10, clock=clock, sweep_budget=4, shards=1)
    for i in range(20):
        await store.put(f"u{i}", "e1", "v1")
    clock.advance(10)
    await store.get("x", "e1")
    assert len(store) == 16
    await store.put("y", "e1", "v1")
    assert len(store) == 13


async def test_purge_expired_reclaims_only_expired_entries_in_chunks(clock: FakeClock) -> None:
    store = MemoryActivationStore(ttl=10, clock=clock, purge_chunk=7)
    for i in range(50):
        await store.put(f"old{i}", "e1", "v1")
    clock.advance(5)
    for i in range(5):
        await store.put(f"new{i}", "e1", "v1")
    clock.advance(5)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    assert await store.purge_expired() == 50
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ticks >= 50 // 7  # the loop ran between chunks
    assert len(store) == 5
    assert (await store.stats()).expiries == 50


async def test_stats_count_hits_misses_and_removals(clock: FakeClock) -> None:
    store = make(clock, max_entries=2)
    await store.put("u1", "e1", "v1")
    await store.get("u1", "e1")  # hit
    await store.get("u2", "e1")  # miss
    await store.live_for_user("u1")  # hit
    await store.live_for_users([("u1", ["e1"]), ("u9", None)])  # hit, miss
    await store.refresh_or_put("u1", "e1", None)  # hit
    await store.put("u2", "e1", "v1")
    await store.put("u3", "e1", "v1")  # evicts u1
    clock.advance(10)
    await store.get("u3", "e1")  # miss; u2 and u3 expire
    assert await store.stats() == ActivationStats(
        entries=0, hits=4, misses=3, evictions=1, expiries=2, dropped=0
    )


async def test_close_empties_the_store(clock: FakeClock) -> None:
    store = make(clock)
    await store.put("u1", "e1", "v1")
    await store.close()
    assert len(store) == 0
    assert (await store.stats()).entries == 0


async def test_default_clock_is_monotonic_time() -> None:
    store = MemoryActivationStore(ttl=3600)
    await store.put("u1", "e1", "v1")
    assert await store.get("u1", "e1") == Held("v1", True)
    assert store.ttl == 3600


@pytest.mark.parametrize(
    ("max_entries", "shards"),
    [(1, 1), (1000, 1), (16_384, 1), (16_385, 2), (1_000_000, 64), (10**9, 4096)],
)
def test_default_shards_keep_each_shard_near_16k_entries(max_entries: int, shards: int) -> None:
    assert default_shards(max_entries) == shards
    assert MemoryActivationStore(max_entries=max_entries).shards == shards


async def test_sharded_store_is_sticky_expires_and_attributes(clock: FakeClock) -> None:
    store = MemoryActivationStore(ttl=10, max_entries=10_000, clock=clock, shards=8)
    for i in range(300):
        await store.put(f"u{i}", f"e{i % 3}", f"v{i % 2}")
    clock.advance(5)
    await store.put("u0", "e0", "v0")  # refreshed
    assert all(
        [await store.get(f"u{i}", f"e{i % 3}") == Held(f"v{i % 2}", True) for i in range(300)]
    )
    assert await store.live_for_users([("u4", None), ("u5", ["e2", "e0"])]) == [
        {"e1": "v0"},
        {"e2": "v1"},
    ]
    clock.advance(5)
    assert await store.live_for_user("u0") == {"e0": "v0"}
    assert await store.get("u1", "e1") is None
    assert await store.purge_expired() > 0  # the rest of what calls did not reclaim
    assert len(store) == 1
    assert (await store.stats()).expiries == 299


async def test_sharded_store_stays_at_the_cap_and_keeps_the_latest(clock: FakeClock) -> None:
    store = MemoryActivationStore(ttl=10, max_entries=50, clock=clock, shards=8)
    for i in range(500):
        await store.put(f"u{i}", "e1", "v1")
        assert await store.get(f"u{i}", "e1") == Held("v1", True)
    assert len(store) == 50
    stats = await store.stats()
    assert (stats.entries, stats.evictions) == (50, 450)


async def test_sharded_retain_reclaims_in_chunks_while_calls_go_on(clock: FakeClock) -> None:
    store = MemoryActivationStore(ttl=10, max_entries=10_000, clock=clock, shards=4, purge_chunk=5)
    for i in range(200):
        await store.put(f"u{i}", "keep" if i % 2 else "drop", "v1")
    retaining = asyncio.create_task(store.retain(lambda experiment_id, _: experiment_id == "keep"))
    await asyncio.sleep(0)
    turns = 0
    while not retaining.done():
        turns += 1
        assert await store.get(f"u{2 * turns}", "drop") is None
        await store.put(f"n{turns}", "keep", "v1")
        assert await store.refresh_or_put(f"u{2 * turns + 1}", "keep", None) == Sticky("v1", True)
        await asyncio.sleep(0)
    assert await retaining == 100
    assert turns >= 200 // 5 - 1
    assert len(store) == 100 + turns
    assert all([await store.get(f"u{i}", "keep") == Held("v1", True) for i in range(1, 200, 2)])
    assert all([await store.get(f"n{t}", "keep") == Held("v1", True) for t in range(1, turns + 1)])


class Entry(NamedTuple):
    experiment_id: str
    variation_id: str
    sticky: bool = True


def layout(store: MemoryActivationStore) -> list[list[tuple[str, int]]]:
    """Each shard's entries in order (least recently written first), with their packed expiry,
    stickiness and variation: all that decides what is read, evicted and expired next."""
    return [list(shard.older.items()) + list(shard.entries.items()) for shard in store._shards]


async def test_put_many_refreshes_and_expires_as_put_does(clock: FakeClock) -> None:
    store = make(clock)
    await store.put("u1", "e1", "v1")
    clock.advance(8)
    await store.put_many("u1", [Entry("e1", "v1"), Entry("e2", "v2", sticky=False)])
    clock.advance(9.999)  # 18 s after the first put: alive only if put_many refreshed it
    assert await store.live_for_user("u1") == {"e1": "v1", "e2": "v2"}
    clock.advance(0.001)
    assert await store.live_for_user("u1") == {}


@pytest.mark.parametrize("shards", [1, 4])
async def test_put_many_evicts_what_puts_in_turn_evict_in_the_same_order(
    clock: FakeClock, shards: int
) -> None:
    in_turn, at_once = (
        MemoryActivationStore(ttl=10, max_entries=6, clock=clock, shards=shards) for _ in "ab"
    )
    entries = [Entry(f"e{i % 5}", f"v{i}", sticky=i % 3 > 0) for i in range(9)]  # e0..e3 twice
    for i in range(5):
        for store in (in_turn, at_once):
            await store.put(f"u{i}", "e1", "v1")
        clock.advance(0.5)
    for store in (in_turn, at_once):
        await store.put("u9", "e4", "old")  # u9's own e4 is replaced, not evicted
    for entry in entries:
        await in_turn.put("u9", entry.experiment_id, entry.variation_id, sticky=entry.sticky)
    await at_once.put_many("u9", entries)
    assert layout(at_once) == layout(in_turn)
    assert await at_once.stats() == await in_turn.stats()
    # u9:e0..e3 are new, e4 was held; sharded, a shard's front may be one of u9's own.
    assert (await at_once.stats()).evictions >= 4
    # The order left behind is the same: the next writes evict the same entries.
    more = [Entry("x1", "v"), Entry("x2", "v")]
    for entry in more:
        await in_turn.put("u8", entry.experiment_id, entry.variation_id)
    await at_once.put_many("u8", more)
    assert layout(at_once) == layout(in_turn)


async def test_put_many_reclaims_and_counts_expired_entries_as_puts_in_turn(
    clock: FakeClock,
) -> None:
    """Each write sweeps a few dead entries off a shard's front, as each put does: the same
    entries held and the same expiries counted, whatever the shard swept."""
    in_turn, at_once = (
        MemoryActivationStore(ttl=10, clock=clock, sweep_budget=2, shards=2) for _ in "ab"
    )
    entries = [Entry(f"e{i}", "v1") for i in range(5)]
    for store in (in_turn, at_once):
        for i in range(40):
            await store.put(f"old{i}", "e1", "v1")
    clock.advance(10)
    for entry in entries:
        await in_turn.put("u1", entry.experiment_id, entry.variation_id)
    await at_once.put_many("u1", entries)
    assert layout(at_once) == layout(in_turn)
    assert len(at_once) == 40 + 5 - 5 * 2
    assert (await at_once.stats()).expiries == (await in_turn.stats()).expiries == 10


# --- the per-user index ---------------------------------------------------------------------


def user_index_recounted(store: MemoryActivationStore) -> bytearray:
    """The per-user index as it must be: each slot the number of entries held (dead ones
    included) whose user hashes there, capped at 255, from the shards themselves."""
    counts = bytearray(len(store._user_counts))
    for shard in store._shards:
        for key in [*shard.older, *shard.entries]:
            slot = hash(key[: key.rindex("\x1f")]) & store._user_mask
            counts[slot] = min(255, counts[slot] + 1)
    return counts


async def test_user_index_counts_every_entry_held_whatever_removes_it(clock: FakeClock) -> None:
    """Every way an entry leaves (expiry swept, found dead by a lookup, eviction at the cap,
    retain's compaction, purge) takes it out of its user's count, so a lookup that trusts a
    zero count (no shard probed) never misses a live activation. Random operations, the
    index recounted from the shards after each."""
    import random

    rng = random.Random(17)
    store = MemoryActivationStore(
        ttl=5, max_entries=12, clock=clock, shards=4, sweep_budget=2, purge_chunk=3
    )
    users = [f"u{i}" for i in range(30)] + ["a\x1f0", "a", ""]
    experiments = ["e0", "e1", "e2", "e3"]
    for step in range(3000):
        user = rng.choice(users)
        action = rng.randrange(9)
        if action == 0:
            await store.put(user, rng.choice(experiments), "v1", sticky=rng.random() < 0.5)
        elif action == 1:
            chosen = rng.sample(experiments, 2)
            await store.put_many(user, [Entry(e, "v2") for e in chosen])
        elif action == 2:
            await store.refresh_or_put(user, rng.choice(experiments), rng.choice(["v1", None]))
        elif action == 3:
            clock.advance(rng.choice([0.5, 2.0, 6.0]))
        elif action == 4:
            await store.live_for_users([(u, None) for u in rng.sample(users, 5)])
        elif action == 5:
            await store.get(user, rng.choice(experiments))
        elif action == 6 and step % 50 == 0:
            dropped = rng.choice(experiments)
            await store.retain(lambda experiment_id, _, d=dropped: experiment_id != d)
        elif action == 7 and step % 20 == 0:
            await store.purge_expired()
        else:
            await store.live_for_user(user, rng.sample(experiments, 2))
        assert store._user_counts == user_index_recounted(store), f"step {step}"
    assert any(store._user_counts)  # the run ended with entries held, not an empty store
    await store.close()
    assert not any(store._user_counts)


async def test_user_index_slot_saturates_and_lookups_stay_exact(clock: FakeClock) -> None:
    """A slot whose count reaches 255 stays there (it then always probes): lookups are as
    exact as ever after the entries behind it are gone."""
    store = make(clock, max_entries=1000)
    experiments = [f"e{i}" for i in range(300)]
    for experiment_id in experiments:
        await store.put("many", experiment_id, "v1")
    slot = hash("many") & store._user_mask
    assert store._user_counts[slot] == 255
    assert await store.retain(lambda experiment_id, _: experiment_id == "e0") == 299
    assert store._user_counts[slot] == 255
    assert await store.live_for_users([("many", None), ("other", None)]) == [{"e0": "v1"}, {}]


def test_user_index_has_at_least_two_slots_per_entry() -> None:
    for max_entries in (1, 5, 1000, 1_000_000):
        store = MemoryActivationStore(max_entries=max_entries)
        slots = len(store._user_counts)
        assert slots >= 2 * max_entries
        assert slots & (slots - 1) == 0


async def test_a_retain_cancelled_mid_compaction_loses_no_live_entry(clock: FakeClock) -> None:
    """A newer datafile cancels the drop under way (trackd.sources.reloader): the next retain
    finishes the compaction cut short instead of losing what it had not yet moved."""
    store = MemoryActivationStore(ttl=100, clock=clock, shards=1, purge_chunk=2)
    for i in range(20):
        await store.put(f"u{i}", "keep" if i % 2 else "drop", "v1")
    retaining = asyncio.create_task(store.retain(lambda experiment_id, _: experiment_id != "drop"))
    await asyncio.sleep(0)  # the codes are retired, one chunk moved, most still in `older`
    assert store._shards[0].older
    retaining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await retaining
    await store.put("late", "other", "v1")
    assert await store.retain(lambda experiment_id, _: experiment_id != "other") == 1
    assert not store._shards[0].older
    assert all([await store.get(f"u{i}", "keep") == Held("v1", True) for i in range(1, 20, 2)])
    assert len(store) == (await store.stats()).entries == 10


async def test_a_compaction_cut_short_is_finished_by_the_next_retain_even_with_nothing_to_drop(
    clock: FakeClock,
) -> None:
    """A datafile that stops nothing new after a superseded drop: the dead entries left in
    `older` are reclaimed all the same, rather than counting against the cap (and evicting
    live activations early) until their TTL."""
    store = MemoryActivationStore(ttl=100, clock=clock, shards=1, purge_chunk=2, max_entries=20)
    for i in range(20):
        await store.put(f"u{i}", "keep" if i % 2 else "drop", "v1")
    retaining = asyncio.create_task(store.retain(lambda experiment_id, _: experiment_id != "drop"))
    await asyncio.sleep(0)
    assert store._shards[0].older
    retaining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await retaining
    assert await store.retain(lambda experiment_id, _: experiment_id != "drop") == 0
    assert not store._shards[0].older
    assert len(store) == 10
    for i in range(10):  # room for all of them: no live activation is evicted
        await store.put(f"new{i}", "keep", "v1")
    assert all([await store.get(f"u{i}", "keep") == Held("v1", True) for i in range(1, 20, 2)])
