"""The activation store contract, run against every store: in memory, host-local (LMDB) and
in a real Redis.

What every `ActivationStore` must do whatever holds it; each store's own file tests what only
it does (the memory store's eviction and sharding, Redis's expiry and outages).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NamedTuple

import pytest

from tests.support.polling import eventually
from trackd.activation import ActivationStore, Held, Sticky
from trackd.activation.local import LocalActivationStore
from trackd.activation.memory import MemoryActivationStore
from trackd.activation.redis import RedisActivationStore

STORES = ["memory", "local", "redis"]


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ActivationStore]:
    made = await _emptied(_make(request))
    yield made
    await made.close()


@pytest.fixture(params=STORES)
async def twins(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[ActivationStore, ActivationStore]]:
    """Two empty stores of one kind (in Redis: one database, two prefixes; local: two
    directories), to do one thing two ways and compare what each leaves."""
    pair = (await _emptied(_make(request, prefix="one:")), _make(request, prefix="two:"))
    yield pair
    for made in pair:
        await made.close()


def _make(request: pytest.FixtureRequest, prefix: str = "trackd:") -> ActivationStore:
    if request.param == "memory":
        return MemoryActivationStore(ttl=60.0, max_entries=1000)
    if request.param == "local":
        directory = request.getfixturevalue("tmp_path") / f"activations-{prefix.rstrip(':')}"
        return LocalActivationStore(directory, ttl=60.0, max_entries=1000)
    url = request.getfixturevalue("shared_redis").url
    return RedisActivationStore.from_url(url, ttl=60.0, prefix=prefix)


async def _emptied(store: ActivationStore) -> ActivationStore:
    if isinstance(store, RedisActivationStore):  # the module's Redis: earlier tests' keys
        await store.client.flushdb()
    return store


class Entry(NamedTuple):
    """An activation for `put_many`."""

    experiment_id: str
    variation_id: str
    sticky: bool = True


# e1 written three times (another variation, then not sticky), e2 stuck then not: each later
# write of one experiment must win, as with puts in turn.
ENTRIES = [
    Entry("e1", "v1"),
    Entry("e2", "v2"),
    Entry("e3", "v3", sticky=False),
    Entry("e1", "v4"),
    Entry("e2", "v2", sticky=False),
    Entry("e1", "v5", sticky=False),
]


async def put_in_turn(store: ActivationStore, user_id: str, entries: list[Entry]) -> None:
    for entry in entries:
        await store.put(user_id, entry.experiment_id, entry.variation_id, sticky=entry.sticky)


async def test_put_replaces_the_variation(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u1", "e1", "v2")
    assert await store.get("u1", "e1") == Held("v2", True)


async def test_activations_are_per_user_and_experiment(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u1", "e2", "v3")
    await store.put("u2", "e1", "v2")
    assert await store.get("u1", "e1") == Held("v1", True)
    assert await store.get("u1", "e2") == Held("v3", True)
    assert await store.get("u2", "e1") == Held("v2", True)
    assert await store.get("u2", "e2") is None
    assert await store.get("u3", "e1") is None
    assert await store.get("u1", "never-seen") is None


async def test_refresh_or_put_stores_the_candidate_when_nothing_is_live(
    store: ActivationStore,
) -> None:
    assert await store.refresh_or_put("u1", "e1", "v1") == Sticky("v1", False)
    assert await store.get("u1", "e1") == Held("v1", True)


async def test_refresh_or_put_without_a_candidate_stores_nothing(
    store: ActivationStore,
) -> None:
    assert await store.refresh_or_put("u1", "e1", None) == Sticky(None, False)
    assert await store.get("u1", "e1") is None
    await store.put("u1", "e1", "v1")
    assert await store.refresh_or_put("u1", "e1", None) == Sticky("v1", True)


async def test_live_for_user_filters_by_experiment_ids(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u1", "e2", "v2")
    await store.put("u1", "e3", "v3")
    await store.put("u2", "e4", "v4")
    assert await store.live_for_user("u1", ["e1", "e3", "e4", "unknown"]) == {
        "e1": "v1",
        "e3": "v3",
    }
    assert await store.live_for_user("u1", frozenset()) == {}


async def test_live_for_users_answers_each_lookup_in_order(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u1", "e2", "v2")
    await store.put("u2", "e2", "v5")
    result = await store.live_for_users(
        [("u1", ["e2"]), ("u2", None), ("u3", None), ("u1", None), ("u2", ["e1"])]
    )
    assert result == [{"e2": "v2"}, {"e2": "v5"}, {}, {"e1": "v1", "e2": "v2"}, {}]
    assert await store.live_for_users([]) == []


async def test_retain_drops_variations_that_no_longer_exist(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u2", "e1", "v2")
    dropped = await store.retain(lambda _, variation_id: variation_id != "v2")
    assert dropped == 1
    assert await store.get("u1", "e1") == Held("v1", True)
    assert await store.get("u2", "e1") is None
    assert await store.refresh_or_put("u2", "e1", "v1") == Sticky("v1", False)


async def test_a_dropped_experiment_that_returns_starts_empty(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u2", "e1", "v1")
    await store.retain(lambda *_: False)
    await store.put("u2", "e1", "v1")
    assert await store.get("u1", "e1") is None
    assert await store.live_for_user("u1") == {}
    assert await store.live_for_user("u2") == {"e1": "v1"}


async def test_retain_keeping_everything_drops_nothing(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    assert await store.retain(lambda *_: True) == 0
    assert await store.get("u1", "e1") == Held("v1", True)


async def test_retain_drops_experiments_that_stopped_running(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u2", "e1", "v2")
    await store.put("u1", "e2", "v3")
    dropped = await store.retain(lambda experiment_id, _: experiment_id != "e1")
    assert dropped == 2
    assert await store.live_for_user("u1") == {"e2": "v3"}
    assert await store.get("u2", "e1") is None
    assert (await store.stats()).dropped == 2


async def test_entries_are_the_activations_held(store: ActivationStore) -> None:
    """Activations, not users or keys: one user in three experiments is three."""
    for experiment_id in ("e1", "e2", "e3"):
        await store.put("u1", experiment_id, "v1")
    await store.put("u2", "e1", "v2")

    async def four() -> bool:  # a shared store may count in the background
        return (await store.stats()).entries == 4

    await eventually(four)


async def test_an_activation_that_is_not_sticky_reads_back_as_such(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1", sticky=False)
    await store.put("u1", "e2", "v2")
    assert await store.get("u1", "e1") == Held("v1", sticky=False)
    assert await store.get("u1", "e2") == Held("v2", sticky=True)
    # Attribution does not care: both are live activations, by their plain variation ids.
    assert await store.live_for_user("u1") == {"e1": "v1", "e2": "v2"}
    assert await store.live_for_users([("u1", ["e1"])]) == [{"e1": "v1"}]


async def test_refresh_or_put_does_not_stick_to_an_activation_that_is_not_sticky(
    store: ActivationStore,
) -> None:
    await store.put("u1", "e1", "forced", sticky=False)
    assert await store.refresh_or_put("u1", "e1", None) == Sticky(None, False)
    assert await store.get("u1", "e1") == Held("forced", sticky=False)  # left as it was
    assert await store.refresh_or_put("u1", "e1", "bucketed") == Sticky("bucketed", False)
    assert await store.get("u1", "e1") == Held("bucketed", sticky=True)
    assert await store.refresh_or_put("u1", "e1", "other") == Sticky("bucketed", True)


async def test_put_replaces_the_stickiness_too(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u1", "e1", "v1", sticky=False)
    assert await store.get("u1", "e1") == Held("v1", sticky=False)
    await store.put("u1", "e1", "v1")
    assert await store.get("u1", "e1") == Held("v1", sticky=True)


async def test_retain_sees_the_plain_variation_of_an_activation_that_is_not_sticky(
    store: ActivationStore,
) -> None:
    await store.put("u1", "e1", "v1", sticky=False)
    await store.put("u2", "e1", "v2", sticky=False)
    seen: set[tuple[str, str]] = set()

    def keep(experiment_id: str, variation_id: str) -> bool:
        seen.add((experiment_id, variation_id))
        return variation_id != "v1"

    assert await store.retain(keep) == 1
    assert seen == {("e1", "v1"), ("e1", "v2")}
    assert await store.get("u1", "e1") is None
    assert await store.get("u2", "e1") == Held("v2", sticky=False)


async def test_put_many_leaves_what_puts_in_turn_leave(
    twins: tuple[ActivationStore, ActivationStore],
) -> None:
    in_turn, at_once = twins
    for store in twins:  # already held: e2 is replaced, e9 left as it is
        await store.put("u1", "e2", "old")
        await store.put("u1", "e9", "v9", sticky=False)
    await put_in_turn(in_turn, "u1", ENTRIES)
    await at_once.put_many("u1", ENTRIES)
    expected = {
        "e1": Held("v5", sticky=False),
        "e2": Held("v2", sticky=False),
        "e3": Held("v3", sticky=False),
        "e9": Held("v9", sticky=False),
    }
    for store in twins:
        assert {e: await store.get("u1", e) for e in expected} == expected
        assert await store.live_for_user("u1") == {e: held[0] for e, held in expected.items()}
        assert await store.get("u2", "e1") is None  # one user's entries only
    # A sticky entry sticks, as after a put; one that is not sticky does not.
    await at_once.put_many("u2", [Entry("e1", "v1"), Entry("e2", "v2", sticky=False)])
    assert await at_once.refresh_or_put("u2", "e1", "other") == Sticky("v1", True)
    assert await at_once.refresh_or_put("u2", "e2", "other") == Sticky("other", False)


async def test_put_many_counts_as_many_entries_as_puts_in_turn(
    twins: tuple[ActivationStore, ActivationStore],
) -> None:
    in_turn, at_once = twins
    await put_in_turn(in_turn, "u1", ENTRIES)
    await put_in_turn(in_turn, "u2", ENTRIES[:2])
    await at_once.put_many("u1", ENTRIES)
    await at_once.put_many("u2", ENTRIES[:2])

    async def five_each() -> bool:  # e1, e2, e3 of u1 and e1, e2 of u2; counted in background
        return [(await store.stats()).entries for store in twins] == [5, 5]

    await eventually(five_each)
    seen_in_turn, seen_at_once = [await store.stats() for store in twins]
    assert seen_at_once == seen_in_turn


async def test_put_many_of_nothing_stores_nothing(store: ActivationStore) -> None:
    await store.put_many("u1", [])
    assert await store.live_for_user("u1") == {}


async def test_held_for_user_says_what_get_says_of_each_live_activation(
    store: ActivationStore,
) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u1", "e2", "v2", sticky=False)
    await store.put("u1", "e3", "v3")
    await store.put("u2", "e4", "v4")
    asked = ["e1", "e2", "e4", "unknown"]
    expected = {"e1": Held("v1", sticky=True), "e2": Held("v2", sticky=False)}
    assert await store.held_for_user("u1", asked) == expected
    assert {e: await store.get("u1", e) for e in expected} == expected
    assert await store.held_for_user("u1", frozenset()) == {}
    assert await store.held_for_user("never-seen", asked) == {}


async def test_held_for_user_answers_many_experiments_in_one_call(
    twins: tuple[ActivationStore, ActivationStore],
) -> None:
    """A Decide of every flag: 60 feature tests held (every third not sticky) among 100
    asked, the same as a `get` of each; another user's left out."""
    store, other_user = twins
    entries = [Entry(f"e{i}", f"v{i % 4}", sticky=i % 3 != 0) for i in range(60)]
    await store.put_many("u1", entries)
    await store.put("u2", "e1", "other")
    asked = [f"e{i}" for i in range(100)]
    found = await store.held_for_user("u1", asked)
    assert found == {e.experiment_id: Held(e.variation_id, e.sticky) for e in entries}
    assert found == {e: held for e in asked if (held := await store.get("u1", e)) is not None}
    assert await other_user.held_for_user("u1", asked) == {}  # another prefix or directory


class Aging(NamedTuple):
    """A store, another on the same activations (`short`) whose writes expire first, and
    `until_expired(gone)`: lets time pass, calling `gone` as it does, until it is true, and
    says after how many steps (`steps_to_expire`, if the store honours its TTL)."""

    store: ActivationStore
    short: ActivationStore
    until_expired: Callable[[Callable[[], Awaitable[bool]]], Awaitable[int]]
    steps_to_expire: int


class SteppedClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=STORES)
async def aging(request: pytest.FixtureRequest) -> AsyncIterator[Aging]:
    """Memory and local: one store on a clock stepped 20 s at a time (a TTL of 60 s), `gone`
    called at each step, the steps counted. Redis: its own clock, which no test can set, so
    `short` writes with a TTL of 0.3 s and `gone` is polled until true (steps not counted)."""
    if request.param == "redis":
        url = request.getfixturevalue("shared_redis").url
        store = await _emptied(RedisActivationStore.from_url(url, ttl=60.0))
        short = RedisActivationStore.from_url(url, ttl=0.3)

        async def polled(gone: Callable[[], Awaitable[bool]]) -> int:
            await eventually(gone, within=30.0)
            return 0

        yield Aging(store, short, polled, 0)
        for made in (store, short):
            await made.close()
        return
    clock = SteppedClock(float(int(time.time())))  # whole seconds: steps add exactly
    made: ActivationStore
    if request.param == "memory":
        made = MemoryActivationStore(ttl=60.0, max_entries=1000, clock=clock)
    else:
        directory = request.getfixturevalue("tmp_path") / "activations"
        made = LocalActivationStore(directory, ttl=60.0, max_entries=1000, clock=clock)

    async def stepped(gone: Callable[[], Awaitable[bool]]) -> int:
        for step in range(1, 10):
            clock.now += 20.0
            if await gone():
                return step
        raise AssertionError("still live 180 s after a write with a TTL of 60 s")

    yield Aging(made, made, stepped, 3)
    await made.close()


async def test_held_for_user_leaves_out_what_expired_and_never_refreshes(aging: Aging) -> None:
    """Read at every step while it ages, an activation still expires a TTL after its write
    (a read that refreshed would keep it live); an expired one is left out beside one live."""
    store = aging.store
    await aging.short.put("u1", "e1", "v1")
    await aging.short.put("u1", "e2", "v2", sticky=False)

    async def gone() -> bool:
        return await store.held_for_user("u1", ["e1", "e2"]) == {}

    steps = await aging.until_expired(gone)
    assert steps == aging.steps_to_expire  # at 60 s: not at 40 s, nor later (Redis: 0)
    await store.put("u1", "e3", "v3")
    assert await store.get("u1", "e1") is None
    assert await store.held_for_user("u1", ["e1", "e2", "e3"]) == {"e3": Held("v3", True)}


@pytest.fixture(params=STORES)
async def stepwise(request: pytest.FixtureRequest) -> AsyncIterator[ActivationStore]:
    """An empty store whose `retain` works a few entries (Redis: a few keys) a step, so a
    cancellation can land between its steps."""
    made: ActivationStore
    if request.param == "memory":
        made = MemoryActivationStore(ttl=60.0, max_entries=1000, purge_chunk=4, shards=1)
    elif request.param == "local":
        directory = request.getfixturevalue("tmp_path") / "activations"
        made = LocalActivationStore(directory, ttl=60.0, max_entries=1000, purge_chunk=4)
    else:
        url = request.getfixturevalue("shared_redis").url
        made = RedisActivationStore.from_url(url, ttl=60.0, scan_count=4)
    yield await _emptied(made)
    await made.close()


async def test_a_retain_cancelled_part_way_leaves_the_next_one_a_consistent_store(
    stepwise: ActivationStore,
) -> None:
    """A newer datafile cancels the drop under way (trackd.sources.reloader), then drops
    against its own running set: here the older stopped e0 and e1, the newer runs e1 again
    and stops e0 and e3. What the cancelled drop reached of e1 is gone, the rest is kept; e0
    and e3 all go, e2 all stays, a new e1 activation is kept, and nothing is left for a third
    drop."""
    store = stepwise
    users = [f"u{i}" for i in range(60)]
    for i, user in enumerate(users):
        await store.put(user, f"e{i % 3}", "v1")
    await store.put("other", "e3", "v1")
    older = asyncio.create_task(store.retain(lambda experiment, _: experiment in ("e2", "e3")))

    async def dropped_some() -> bool:
        return None in [await store.get(user, "e0") for user in users[0::3]]

    for _ in range(1000):  # a step of each in turn: `eventually` sleeps past a whole retain
        if older.done() or await dropped_some():
            break
        await asyncio.sleep(0)
    older.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await older
    assert older.cancelled()  # landed part way, not after the end
    await store.retain(lambda experiment, _: experiment not in ("e0", "e3"))
    found = [await store.get(user, f"e{i % 3}") for i, user in enumerate(users)]
    assert found[0::3] == [None] * 20
    assert set(found[1::3]) <= {None, Held("v1", True)}
    assert found[2::3] == [Held("v1", True)] * 20
    assert await store.get("other", "e3") is None
    await store.put("new", "e1", "v1")
    assert await store.get("new", "e1") == Held("v1", True)
    assert await store.retain(lambda experiment, _: experiment not in ("e0", "e3")) == 0
