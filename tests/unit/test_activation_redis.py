"""RedisActivationStore against a real redis-server: the memory store's semantics, shared.

Expiry is Redis's clock (TIME inside the scripts), which a test cannot set. So no test
straddles a TTL with sleeps: what must stay live is written by a store whose TTL outlives
any test (LONG_TTL), what must expire is written with a short one (TTL) and waited for as
a condition, and a refresh is read from the expiry stamp the scripts keep in each field.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

import pytest
from redis.asyncio import Redis

from tests.support.polling import eventually
from tests.support.redis_server import RedisServer, redis_server
from trackd.activation import ActivationStore, Held, Sticky
from trackd.activation.redis import ActivationStoreUnavailable, RedisActivationStore

TTL = 0.4  # for what a test waits to see expire
LONG_TTL = 3600.0  # for what a test needs live, however slow the machine


@pytest.fixture
async def store(shared_redis: RedisServer) -> AsyncIterator[RedisActivationStore]:
    made = make(shared_redis)
    await made.client.flushdb()
    yield made
    await made.close()


@pytest.fixture
async def short(shared_redis: RedisServer) -> AsyncIterator[RedisActivationStore]:
    """A store on the same Redis whose activations expire within TTL."""
    made = make(shared_redis, ttl=TTL)
    yield made
    await made.close()


def make(shared_redis: RedisServer, **kwargs: float) -> RedisActivationStore:
    return RedisActivationStore.from_url(shared_redis.url, **{"ttl": LONG_TTL, **kwargs})  # type: ignore[arg-type]


async def expiry_stamp(store: RedisActivationStore, user_id: str, experiment_id: str) -> int:
    """The Redis time (ms) at which the stored activation expires: the field's first word."""
    value = await store.client.hget(f"trackd:a:{user_id}", experiment_id)
    return int(value.split(" ", 1)[0])


async def redis_ms(store: RedisActivationStore) -> int:
    seconds, micros = await store.client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def expired(store: RedisActivationStore, user_id: str, experiment_id: str) -> None:
    async def gone() -> bool:
        return await store.get(user_id, experiment_id) is None

    await eventually(gone, within=TTL + 30)


async def later_than(store: RedisActivationStore, stamp: int, by_ms: int) -> None:
    """Waits until Redis's clock is `by_ms` past the write that set `stamp`."""
    written = stamp - round(store.ttl * 1000)

    async def passed() -> bool:
        return await redis_ms(store) >= written + by_ms

    await eventually(passed)


def test_redis_store_satisfies_the_interface(shared_redis: RedisServer) -> None:
    store: ActivationStore = make(shared_redis)
    assert isinstance(store, RedisActivationStore)
    assert store.ttl == LONG_TTL


@pytest.mark.parametrize("kwargs", [{"ttl": 0}, {"ttl": -1.0}, {"batch_keys": 0}])
def test_invalid_settings_are_rejected(shared_redis: RedisServer, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        make(shared_redis, **kwargs)


async def test_activation_is_sticky_within_the_ttl_and_expires_after(
    store: RedisActivationStore, short: RedisActivationStore
) -> None:
    await store.put("u1", "e1", "v1")
    assert await store.get("u1", "e1") == Held("v1", True)
    assert await store.live_for_user("u1") == {"e1": "v1"}
    await short.put("u2", "e1", "v1")
    stamp = await expiry_stamp(short, "u2", "e1")
    await expired(short, "u2", "e1")
    assert await redis_ms(short) >= stamp  # not before its TTL
    assert await short.live_for_user("u2") == {}


async def test_redis_itself_removes_a_user_once_every_activation_expired(
    store: RedisActivationStore, short: RedisActivationStore
) -> None:
    await store.put("u1", "e1", "v1")
    ttl_ms = await store.client.pttl("trackd:a:u1")
    assert 0 < ttl_ms <= LONG_TTL * 1000
    await short.put("u2", "e1", "v1")

    async def removed() -> bool:
        return await short.client.exists("trackd:a:u2") == 0

    await eventually(removed, within=TTL + 30)


async def test_put_refreshes_the_expiry_and_get_never_does(store: RedisActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    first = await expiry_stamp(store, "u1", "e1")
    await later_than(store, first, by_ms=20)
    await store.put("u1", "e1", "v1")
    second = await expiry_stamp(store, "u1", "e1")
    assert second >= first + 20
    await later_than(store, second, by_ms=20)
    assert await store.get("u1", "e1") == Held("v1", True)
    assert await expiry_stamp(store, "u1", "e1") == second


async def test_any_user_id_and_variation_id_round_trips(store: RedisActivationStore) -> None:
    odd = ["", "a b", "a\x1f0", "ünï cødé", "a:b*c", "x" * 1024]
    for i, user_id in enumerate(odd):
        await store.put(user_id, "e1", f"v {i} with spaces")
    for i, user_id in enumerate(odd):
        assert await store.live_for_user(user_id) == {"e1": f"v {i} with spaces"}


async def test_refresh_or_put_keeps_the_live_variation_and_refreshes_it(
    store: RedisActivationStore,
) -> None:
    await store.put("u1", "e1", "v1")
    first = await expiry_stamp(store, "u1", "e1")
    await later_than(store, first, by_ms=20)
    assert await store.refresh_or_put("u1", "e1", "v2") == Sticky("v1", True)
    assert await expiry_stamp(store, "u1", "e1") >= first + 20
    assert await store.get("u1", "e1") == Held("v1", True)


async def test_refresh_or_put_decides_afresh_after_expiry(
    store: RedisActivationStore, short: RedisActivationStore
) -> None:
    await short.put("u1", "e1", "v1")
    await expired(short, "u1", "e1")
    assert await store.refresh_or_put("u1", "e1", "v2") == Sticky("v2", False)
    assert await store.get("u1", "e1") == Held("v2", True)


async def test_a_write_prunes_fields_that_expired_inside_a_live_hash(
    store: RedisActivationStore, short: RedisActivationStore
) -> None:
    await short.put("u1", "e1", "v1")
    await store.put("u1", "e2", "v2")  # the hash now lives LONG_TTL
    await expired(short, "u1", "e1")
    await store.put("u1", "e3", "v3")
    assert await store.client.hkeys("trackd:a:u1") == ["e2", "e3"]
    assert (await store.stats()).expiries == 1


async def test_live_for_user_skips_an_expired_experiment_of_a_live_user(
    store: RedisActivationStore, short: RedisActivationStore
) -> None:
    await short.put("u1", "e1", "v1")
    await store.put("u1", "e2", "v2")
    assert await store.client.hkeys("trackd:a:u1") == ["e1", "e2"]
    await expired(short, "u1", "e1")
    assert await store.live_for_user("u1", None) == {"e2": "v2"}
    assert await store.live_for_user("u1", ["e1", "e2"]) == {"e2": "v2"}


async def test_a_large_batch_is_answered_in_chunks_of_one_pipeline(
    shared_redis: RedisServer,
) -> None:
    store = make(shared_redis, batch_keys=7)
    try:
        await store.client.flushdb()
        for i in range(0, 100, 3):
            await store.put(f"u{i}", "e1", f"v{i}")
        lookups = [(f"u{i}", ["e1"] if i % 2 else None) for i in range(100)]
        result = await store.live_for_users(lookups)
        assert result == [({"e1": f"v{i}"} if i % 3 == 0 else {}) for i in range(100)]
    finally:
        await store.close()


async def test_a_restarted_redis_forgets_scripts_and_the_store_reloads_them(
    store: RedisActivationStore,
) -> None:
    await store.put("u1", "e1", "v1")
    await store.client.script_flush()
    assert await store.get("u1", "e1") == Held("v1", True)
    await store.client.script_flush()
    store._batch_keys = 1  # force the pipelined path
    assert await store.live_for_users([("u1", None), ("u2", None)]) == [{"e1": "v1"}, {}]


async def test_retain_deletes_a_user_left_with_no_activation(store: RedisActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u2", "e1", "v2")
    await store.put("u1", "e2", "v3")
    assert await store.retain(lambda experiment_id, _: experiment_id != "e1") == 2
    assert await store.client.exists("trackd:a:u2") == 0


async def test_retain_scans_many_users_in_chunks(shared_redis: RedisServer) -> None:
    store = RedisActivationStore.from_url(shared_redis.url, ttl=LONG_TTL, scan_count=10)
    try:
        await store.client.flushdb()
        for i in range(300):
            await store.put(f"u{i}", "e1" if i % 4 else "e0", "v1")
        assert await store.retain(lambda experiment_id, _: experiment_id == "e0") == 225
        assert await store.client.dbsize() == 75 + 1  # the users left, and the pairs set
        assert await store.live_for_user("u0") == {"e0": "v1"}
        assert await store.client.smembers("trackd:pairs") == {"e0\x1fv1"}
    finally:
        await store.close()


async def test_two_stores_on_one_redis_share_activations(shared_redis: RedisServer) -> None:
    a, b = make(shared_redis), make(shared_redis)
    try:
        await a.client.flushdb()
        assert await a.refresh_or_put("u1", "e1", "v1") == Sticky("v1", False)
        assert await b.refresh_or_put("u1", "e1", "v2") == Sticky("v1", True)
        assert await b.live_for_user("u1", ["e1"]) == {"e1": "v1"}
    finally:
        await a.close()
        await b.close()


async def test_a_prefix_keeps_two_deployments_apart(shared_redis: RedisServer) -> None:
    a = RedisActivationStore.from_url(shared_redis.url, ttl=LONG_TTL, prefix="one:")
    b = RedisActivationStore.from_url(shared_redis.url, ttl=LONG_TTL, prefix="two:")
    try:
        await a.put("u1", "e1", "v1")
        assert await b.get("u1", "e1") is None
    finally:
        await a.close()
        await b.close()


async def test_stats_count_hits_and_misses(store: RedisActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.get("u1", "e1")
    await store.get("u2", "e1")
    await store.live_for_user("u1")
    await store.live_for_user("u2")
    stats = await store.stats()
    assert (stats.hits, stats.misses) == (2, 2)


async def test_entries_count_only_this_deployments_activations(
    shared_redis: RedisServer,
) -> None:
    """Not DBSIZE: the pairs set, the fleet results and other deployments' keys in the same
    database are not activations of this one."""
    store = RedisActivationStore.from_url(shared_redis.url, ttl=60.0)
    await store.client.flushdb()
    try:
        await _three_activations_among_foreign_keys(store)

        async def three_entries() -> bool:  # stats() counts in the background
            return (await store.stats()).entries == 3

        await eventually(three_entries)
        assert await store.count_activations() == 3
    finally:
        await store.close()


async def _three_activations_among_foreign_keys(store: RedisActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u1", "e2", "v2")
    await store.put("u2", "e1", "v1")
    client = store.client
    await client.hset("trackd:r:e1", "v1\x1fc", 3)  # fleet results
    await client.hset("trackd:rc", "replica", 7)
    await client.hset("other:a:u9", mapping={"e1": "99999999999999 v1", "e2": "9 v2"})
    await client.set("trackd-other:a:u8", "x")
    await client.mset({f"foreign:{n}": "x" for n in range(2500)})  # several SCAN chunks
    assert await client.dbsize() > 2500


async def test_one_replica_counts_and_the_others_read_its_figure(
    shared_redis: RedisServer,
) -> None:
    """The count is linear in the database, so the fleet runs one per interval, not one per
    replica and scrape."""
    first = RedisActivationStore.from_url(shared_redis.url, ttl=60.0)
    second = RedisActivationStore.from_url(shared_redis.url, ttl=60.0)
    try:
        await first.client.flushdb()
        await _three_activations_among_foreign_keys(first)
        for replica in (first, second):

            async def three_entries(replica: RedisActivationStore = replica) -> bool:
                return (await replica.stats()).entries == 3

            await eventually(three_entries)
        assert (first.counts, second.counts) == (1, 0)
    finally:
        await first.close()
        await second.close()


async def test_entries_of_a_prefix_with_glob_characters_are_its_own(
    shared_redis: RedisServer,
) -> None:
    odd = RedisActivationStore.from_url(shared_redis.url, ttl=60.0, prefix="t[1]*?:")
    plain = RedisActivationStore.from_url(shared_redis.url, ttl=60.0, prefix="t1xy:")
    try:
        await odd.client.flushdb()
        await odd.put("u1", "e1", "v1")
        await plain.put("u1", "e1", "v1")
        await plain.put("u2", "e1", "v1")
        assert (await odd.count_activations(), await plain.count_activations()) == (1, 2)
    finally:
        await odd.close()
        await plain.close()


async def test_purge_expired_is_left_to_redis(store: RedisActivationStore) -> None:
    assert await store.purge_expired() == 0


async def test_an_unreachable_redis_is_refused_without_trying_until_the_retry_interval(
    tmp_path: Path,
) -> None:
    now = [0.0]  # the store's clock, moved by hand: the retry window is not waited out
    down = RedisServer(tmp_path / "redis")
    store = RedisActivationStore.from_url(
        down.url, ttl=LONG_TTL, retry_interval=1.0, clock=lambda: now[0]
    )
    try:
        with pytest.raises(ActivationStoreUnavailable):
            await store.get("u1", "e1")
        assert not store.available
        down.start()
        try:
            # Redis answers again, so only a refusal without a connection attempt fails these.
            for _ in range(100):
                with pytest.raises(ActivationStoreUnavailable):
                    await store.live_for_user("u1")
            assert (store.failures, store.outages) == (101, 1)
            assert (await store.stats()).entries == 0  # stats never raise
            now[0] += 1.0
            await store.put("u1", "e1", "v1")
            assert store.available
            assert await store.get("u1", "e1") == Held("v1", True)
        finally:
            down.stop()
    finally:
        await store.close()


async def test_a_redis_restart_breaks_no_call_after_it_is_back(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis", persist=True) as shared_redis:
        now = [0.0]
        store = RedisActivationStore.from_url(
            shared_redis.url, ttl=LONG_TTL, retry_interval=1.0, clock=lambda: now[0]
        )
        try:
            await store.put("u1", "e1", "v1")
            shared_redis.stop()
            with pytest.raises(ActivationStoreUnavailable):
                await store.get("u1", "e1")
            shared_redis.start()  # returns once it answers PING
            now[0] += 1.0  # past the retry window
            # Pooled connections broke with the restart; the store reconnects and the
            # append-only file brought the activation back.
            assert await store.get("u1", "e1") == Held("v1", True)
            assert await store.live_for_users([("u1", None)]) == [{"e1": "v1"}]
        finally:
            await store.close()


def test_unavailable_is_a_trackd_unavailable_error() -> None:
    from trackd.errors import Unavailable

    assert issubclass(ActivationStoreUnavailable, Unavailable)


async def test_the_pool_is_bounded(shared_redis: RedisServer) -> None:
    observer = Redis.from_url(shared_redis.url)
    store = make(shared_redis, max_connections=2)
    try:
        before = len(await observer.client_list())
        await asyncio.gather(*(store.put(f"u{i}", "e1", "v1") for i in range(50)))
        assert await store.live_for_user("u49") == {"e1": "v1"}
        assert len(await observer.client_list()) - before <= 2
    finally:
        await store.close()
        await observer.aclose()


async def test_a_busy_pool_fails_one_call_and_does_not_count_as_redis_down(
    shared_redis: RedisServer,
) -> None:
    observer = Redis.from_url(shared_redis.url)
    store = make(shared_redis, max_connections=1, pool_timeout=0.05)
    try:
        # BLPOP holds the only connection until the observer pushes to its list.
        holder = asyncio.create_task(store.client.blpop(["trackd-test:nothing"], timeout=60))

        async def holding() -> bool:
            return int((await observer.info("clients"))["blocked_clients"]) == 1

        await eventually(holding)
        with pytest.raises(ActivationStoreUnavailable, match="busy"):
            await store.get("u1", "e1")
        assert store.available and store.busy == 1 and store.outages == 0
        await observer.lpush("trackd-test:nothing", "release")
        await holder
        await store.put("u1", "e1", "v1")  # at once: no fast-fail window was opened
        assert await store.get("u1", "e1") == Held("v1", True)
    finally:
        await store.close()
        await observer.aclose()


async def test_values_written_before_the_sticky_flag_still_read(
    shared_redis: RedisServer,
) -> None:
    """An older trackd marked a forced activation by a NUL before its variation id, in the
    user's hash and in the pairs set: it still reads as not sticky, by its plain id."""
    store = RedisActivationStore.from_url(shared_redis.url, ttl=60.0)
    client = store.client
    try:
        await client.flushdb()
        expiry = await redis_ms(store) + 60_000
        await client.hset("trackd:a:u1", mapping={"e1": f"{expiry} \x00v1", "e2": f"{expiry} v2"})
        await client.pexpire("trackd:a:u1", 60_000)
        await client.sadd("trackd:pairs", "e1\x1f\x00v1", "e2\x1fv2")

        assert await store.get("u1", "e1") == Held("v1", sticky=False)
        assert await store.get("u1", "e2") == Held("v2", sticky=True)
        assert await store.live_for_user("u1") == {"e1": "v1", "e2": "v2"}
        assert await store.held_for_user("u1", ["e1", "e2"]) == {
            "e1": Held("v1", sticky=False),
            "e2": Held("v2", sticky=True),
        }
        assert await store.refresh_or_put("u1", "e1", None) == Sticky(None, False)
        assert await store.refresh_or_put("u1", "e2", None) == Sticky("v2", True)

        seen: list[tuple[str, str]] = []

        def keep(experiment_id: str, variation_id: str) -> bool:
            seen.append((experiment_id, variation_id))
            return experiment_id != "e1"

        assert await store.retain(keep) == 1
        assert sorted(seen) == [("e1", "v1"), ("e2", "v2")]
        assert await store.get("u1", "e1") is None
        assert await client.smembers("trackd:pairs") == {"e2\x1fv2"}
    finally:
        await store.close()


# The GET script of the trackd before the sticky flag, as a replica not yet upgraded runs it.
_OLD_GET = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function live(value)
  if not value then return nil end
  local sp = string.find(value, ' ', 1, true)
  if sp == nil or tonumber(string.sub(value, 1, sp - 1)) <= now then return nil end
  return string.sub(value, sp + 1)
end
return live(redis.call('HGET', KEYS[1], ARGV[1]))
"""


async def test_an_older_replica_reads_a_new_non_sticky_value_as_expired_not_as_an_error(
    shared_redis: RedisServer,
) -> None:
    """During a rolling upgrade both versions share the hashes: the old scripts must not
    fail on what the new ones write."""
    store = RedisActivationStore.from_url(shared_redis.url, ttl=60.0)
    try:
        await store.client.flushdb()
        await store.put("u1", "e1", "forced", sticky=False)
        await store.put("u1", "e2", "bucketed")
        old_get = store.client.register_script(_OLD_GET)
        assert await old_get(keys=["trackd:a:u1"], args=["e1"]) is None
        assert await old_get(keys=["trackd:a:u1"], args=["e2"]) == "bucketed"
    finally:
        await store.close()


class Entry(NamedTuple):
    experiment_id: str
    variation_id: str
    sticky: bool = True


async def commands_sent(
    shared_redis: RedisServer, during: Callable[[], Awaitable[None]]
) -> list[str]:
    """The commands clients sent Redis while `during` ran, as MONITOR saw them: names only,
    and not those the scripts ran."""
    watcher = Redis.from_url(shared_redis.url, decode_responses=True)
    marker = Redis.from_url(shared_redis.url, decode_responses=True)
    try:
        await marker.ping()  # its connection opened before watching: it sends no HELLO then
        async with watcher.monitor() as monitor:
            await during()
            await marker.echo("trackd-test-done")  # after `during`'s commands, on Redis too
            sent = []
            while (seen := await monitor.next_command())["command"] != "ECHO trackd-test-done":
                if seen["client_type"] != "lua":
                    sent.append(seen["command"].split(" ", 1)[0].upper())
            return sent
    finally:
        await watcher.aclose()
        await marker.aclose()


async def test_put_many_is_one_round_trip(
    store: RedisActivationStore, shared_redis: RedisServer
) -> None:
    entries = [Entry(f"e{i}", f"v{i}", sticky=i % 2 == 0) for i in range(25)]
    await store.put("warm", "e1", "v1")  # the connection opened, the scripts loaded
    await store.put_many("warm", entries)

    async def in_turn() -> None:
        for entry in entries:
            await store.put("u1", entry.experiment_id, entry.variation_id, sticky=entry.sticky)

    assert await commands_sent(shared_redis, in_turn) == ["EVALSHA"] * 25  # what it saves
    assert await commands_sent(shared_redis, lambda: store.put_many("u2", entries)) == ["EVALSHA"]
    assert await commands_sent(shared_redis, lambda: store.put_many("u3", [])) == []
    assert await store.live_for_user("u2") == await store.live_for_user("u1")
    assert len(await store.live_for_user("u2")) == 25


async def test_put_many_stamps_each_expiry_and_the_users_key_as_put_does(
    store: RedisActivationStore,
) -> None:
    before = await redis_ms(store)
    await store.put_many("u1", [Entry("e1", "v1"), Entry("e2", "v2", sticky=False)])
    after = await redis_ms(store)
    ttl_ms = round(LONG_TTL * 1000)
    sticky = await expiry_stamp(store, "u1", "e1")
    assert before + ttl_ms <= sticky <= after + ttl_ms
    assert await expiry_stamp(store, "u1", "e2") == -sticky  # negated: not sticky
    assert 0 < await store.client.pttl("trackd:a:u1") <= ttl_ms
    assert await store.client.smembers("trackd:pairs") == {"e1\x1fv1", "e2\x1fv2"}


@pytest.mark.parametrize(
    ("held_long", "held_short", "pruned"),
    [
        (["e9"], ["e1", "e2", "e3"], 2),  # by the first write (which overwrites its own e1)
        (["e2"], ["e2"], 1),  # a lone field is left by the first write, pruned by the second
        ([], [], 0),
    ],
)
async def test_put_many_prunes_and_counts_expired_fields_as_puts_in_turn(
    store: RedisActivationStore,
    short: RedisActivationStore,
    held_long: list[str],
    held_short: list[str],
    pruned: int,
) -> None:
    """A user's expired fields go, and count as expiries, exactly as with puts in turn."""
    entries = [Entry("e1", "n1"), Entry("e4", "n4"), Entry("e5", "n5")]
    for user_id in ("in_turn", "at_once"):
        for experiment_id in held_long:
            await store.put(user_id, experiment_id, "old")
        for experiment_id in held_short:  # PEXPIRE only lengthens: the hash outlives these
            await short.put(user_id, experiment_id, "old")
    for user_id in ("in_turn", "at_once"):
        for experiment_id in held_short:
            await expired(short, user_id, experiment_id)
    expiries = (await store.stats()).expiries
    for entry in entries:
        await store.put("in_turn", entry.experiment_id, entry.variation_id)
    pruned_in_turn = (await store.stats()).expiries - expiries
    await store.put_many("at_once", entries)
    pruned_at_once = (await store.stats()).expiries - expiries - pruned_in_turn
    assert pruned_at_once == pruned_in_turn == pruned
    held = [sorted(await store.client.hkeys(f"trackd:a:{u}")) for u in ("in_turn", "at_once")]
    assert held[0] == held[1]


async def test_put_many_is_refused_while_redis_is_down_and_nothing_is_not_a_call(
    tmp_path: Path,
) -> None:
    down = RedisServer(tmp_path / "redis")
    store = RedisActivationStore.from_url(down.url, ttl=LONG_TTL)
    try:
        await store.put_many("u1", [])  # no round trip, so no outage to see
        assert (store.failures, store.available) == (0, True)
        with pytest.raises(ActivationStoreUnavailable):
            await store.put_many("u1", [Entry("e1", "v1")])
        with pytest.raises(ActivationStoreUnavailable):  # refused at once in the window
            await store.put_many("u1", [Entry("e1", "v1")])
        assert (store.failures, store.outages) == (2, 1)
    finally:
        await store.close()


async def test_put_many_reloads_its_script_after_a_restart_forgot_it(
    store: RedisActivationStore,
) -> None:
    await store.put_many("u1", [Entry("e1", "v1")])
    await store.client.script_flush()
    await store.put_many("u1", [Entry("e2", "v2")])
    assert await store.live_for_user("u1") == {"e1": "v1", "e2": "v2"}


async def test_retain_paces_its_scans_to_the_rate_bound(shared_redis: RedisServer) -> None:
    """A drop after a datafile change walks every user hash; it pauses 1/rate seconds between
    SCAN steps, so Redis keeps answering requests meanwhile."""
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    store = RedisActivationStore.from_url(
        shared_redis.url, ttl=LONG_TTL, scan_count=10, retain_scans_per_second=50.0, sleep=sleep
    )
    try:
        await store.client.flushdb()
        for i in range(100):
            await store.put(f"u{i}", "e1", "v1")
        assert await store.retain(lambda experiment_id, _: experiment_id != "e1") == 100
        assert len(pauses) >= 5  # about one per SCAN of 10 over 100 keys
        assert set(pauses) == {1 / 50.0}
        pauses.clear()
        await store.count_activations()  # counting is not a retain: not paced
        assert pauses == []
    finally:
        await store.close()
