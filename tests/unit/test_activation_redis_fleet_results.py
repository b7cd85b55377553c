"""Fleet-wide results: two replicas' outboxes summed in a real Redis, each row counted once."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.support.polling import eventually
from tests.support.redis_server import RedisServer
from tests.unit.test_outbox_results import (
    CONFIG,
    EXPECTED,
    EXPERIMENT,
    SCENARIO,
    A,
    B,
    conversion,
    impression,
)
from trackd.events.fleet import FleetResults
from trackd.events.outbox import Outbox


@pytest.fixture
async def redis(shared_redis: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(shared_redis.url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


@contextlib.asynccontextmanager
async def replica(path: Path, client: Redis) -> AsyncIterator[tuple[Outbox, FleetResults]]:
    fleet = FleetResults(client, path, publish_interval=0.02, retry_interval=0.02)
    outbox = Outbox(path, results_observer=fleet.observe)
    await outbox.open()
    await fleet.start()
    try:
        yield outbox, fleet
    finally:
        await fleet.close()
        await outbox.close()


async def test_two_replicas_answer_for_the_fleet(tmp_path: Path, redis: Redis) -> None:
    first, second, third = SCENARIO
    async with (
        replica(tmp_path / "a.sqlite3", redis) as (outbox_a, fleet_a),
        replica(tmp_path / "b.sqlite3", redis) as (outbox_b, fleet_b),
    ):
        await outbox_a.append(first[:2])  # u1, u2 in A
        await outbox_b.append(first[2:])  # u3 in B
        await outbox_b.append(second)  # u1 in A again, on the other replica: one visitor
        await outbox_a.append(third[:2])
        await outbox_b.append(third[2:])
        for outbox, fleet in ((outbox_a, fleet_a), (outbox_b, fleet_b)):

            async def fleet_wide_counts(
                outbox: Outbox = outbox, fleet: FleetResults = fleet
            ) -> bool:
                # Another replica's commits arrive within its idle count and publish interval.
                results, fleet_wide = await fleet.results(outbox, CONFIG, EXPERIMENT)
                assert fleet_wide
                return results == EXPECTED

            await eventually(fleet_wide_counts, within=5)
        local_a = await outbox_a.results(CONFIG, EXPERIMENT)
        assert [v.visitors for v in local_a.variations] == [2, 0]
    # Unique users are HyperLogLogs (12 KB a group, whatever the traffic), never sets.
    unique_keys = [key async for key in redis.scan_iter("trackd:ru:*")]
    assert unique_keys
    for key in unique_keys:
        assert await redis.type(key) == "string"
        assert await redis.pfcount(key) >= 1


async def test_a_row_sent_twice_is_counted_once(tmp_path: Path, redis: Redis) -> None:
    path = tmp_path / "a.sqlite3"
    async with replica(path, redis) as (outbox, fleet):
        for batch in SCENARIO:
            await outbox.append(batch)
        await outbox.results(CONFIG, EXPERIMENT)
        fleet._delete = lambda up_to: None  # type: ignore[method-assign]  # "crash" before
        assert await fleet.flush() >= 1
        replica_id = fleet.replica_id
    with sqlite3.connect(path) as conn:
        (pending,) = conn.execute("SELECT COUNT(*) FROM fleet_pending").fetchone()
    assert pending >= 1
    async with replica(path, redis) as (outbox, fleet):
        assert fleet.replica_id == replica_id  # the same replica after a restart
        results, fleet_wide = await fleet.results(outbox, CONFIG, EXPERIMENT)
        assert fleet_wide and results == EXPECTED
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM fleet_pending").fetchone() == (0,)


async def test_with_redis_down_results_are_local_and_published_once_it_is_back(
    tmp_path: Path,
) -> None:
    down = RedisServer(tmp_path / "redis")
    client = Redis.from_url(down.url, decode_responses=True, socket_connect_timeout=0.2)
    try:
        async with replica(tmp_path / "a.sqlite3", client) as (outbox, fleet):
            await outbox.append([impression("u1", A), impression("u2", B)])
            results, fleet_wide = await fleet.results(outbox, CONFIG, EXPERIMENT)
            assert not fleet_wide
            assert [v.visitors for v in results.variations] == [1, 1]
            assert fleet.fallbacks == 1
            down.start()
            try:
                await outbox.append(
                    [conversion("u1", "my_conversion", {"revenue": 5}, [("40001", "42001")])]
                )

                async def back() -> bool:  # once the retry interval has passed
                    return (await fleet.results(outbox, CONFIG, EXPERIMENT))[1]

                await eventually(back, within=10)
                results, fleet_wide = await fleet.results(outbox, CONFIG, EXPERIMENT)
                assert fleet_wide
                assert [v.visitors for v in results.variations] == [1, 1]
                (event,) = [e for e in results.variations[0].events if e.converters]
                assert (event.conversions, event.revenue) == (1, 5)
            finally:
                down.stop()
    finally:
        await client.aclose()


async def test_revenue_beyond_2_to_the_53_is_summed_exactly(tmp_path: Path, redis: Redis) -> None:
    big = 2**60 + 1
    async with replica(tmp_path / "a.sqlite3", redis) as (outbox, fleet):
        await outbox.append(
            [conversion("u1", "my_conversion", {"revenue": big}, [("40001", "42001")])] * 2
        )
        results, _ = await fleet.results(outbox, CONFIG, EXPERIMENT)
        (event,) = [e for e in results.variations[0].events if e.converters]
        assert event.revenue == 2 * big


async def test_sums_beyond_int64_saturate_and_never_block_later_rows(
    tmp_path: Path, redis: Redis
) -> None:
    # Redis keeps a script's writes made before an error: a failing HINCRBY would count the
    # conversions again on every retry and hold back every later row.
    huge = 2**63 - 1
    attributed = [("40001", "42001")]
    async with replica(tmp_path / "a.sqlite3", redis) as (outbox, fleet):
        await outbox.append([impression("u1", A)])
        await outbox.append([conversion("u1", "my_conversion", {"revenue": huge}, attributed)])
        await outbox.append([conversion("u1", "my_conversion", {"revenue": huge}, attributed)])
        await outbox.append([conversion("u2", "my_conversion", {}, attributed)])

        async def published() -> bool:
            results, fleet_wide = await fleet.results(outbox, CONFIG, EXPERIMENT)
            assert fleet_wide
            events = {
                e.event_key: e
                for v in results.variations
                if v.variation_key == "variation_a"
                for e in v.events
            }
            counted = events.get("my_conversion")
            return counted is not None and counted.conversions == 3

        await eventually(published, within=10)
        results, _ = await fleet.results(outbox, CONFIG, EXPERIMENT)
        (variation,) = [v for v in results.variations if v.variation_key == "variation_a"]
        (counted,) = [e for e in variation.events if e.event_key == "my_conversion"]
        assert (counted.conversions, counted.converters, counted.revenue) == (3, 2, huge)
        assert fleet.rejected_rows == 0


async def test_a_row_redis_refuses_is_logged_and_skipped(tmp_path: Path, redis: Redis) -> None:
    attributed = [("40001", "42001")]
    async with replica(tmp_path / "a.sqlite3", redis) as (outbox, fleet):
        # Another program's string where a results hash belongs: Redis answers WRONGTYPE.
        await redis.set("trackd:r:40001", "not a hash")
        await outbox.append([conversion("u1", "my_conversion", {}, attributed)])
        await eventually(lambda: fleet.rejected_rows == 1, within=10)
        await redis.delete("trackd:r:40001")
        await outbox.append([conversion("u2", "my_conversion", {}, attributed)])

        async def second_counted() -> bool:
            results, fleet_wide = await fleet.results(outbox, CONFIG, EXPERIMENT)
            (variation,) = [v for v in results.variations if v.variation_key == "variation_a"]
            return fleet_wide and any(
                e.event_key == "my_conversion" and e.conversions == 1 for e in variation.events
            )

        await eventually(second_counted, within=10)


async def test_while_redis_is_down_results_do_not_wait_on_it_again(tmp_path: Path) -> None:
    down = RedisServer(tmp_path / "redis")  # never started
    client = Redis.from_url(down.url, decode_responses=True, socket_connect_timeout=0.2)
    fleet = FleetResults(client, tmp_path / "a.sqlite3", publish_interval=60, retry_interval=60)
    outbox = Outbox(tmp_path / "a.sqlite3", results_observer=fleet.observe)
    await outbox.open()
    await fleet.start()
    try:
        for _ in range(3):
            _, fleet_wide = await fleet.results(outbox, CONFIG, EXPERIMENT)
            assert not fleet_wide
        assert fleet.fallbacks == 3
        assert fleet.failures == 1  # one real attempt; the others answered at once
    finally:
        await fleet.close()
        await outbox.close()
        await client.aclose()


async def test_close_returns_even_if_a_publish_call_loses_the_cancel(
    tmp_path: Path, redis: Redis
) -> None:
    # Seen in CI: during a Redis restart a cancelled script call returned normally, the
    # publisher looped on, and close() (so the daemon's shutdown) waited forever.
    async with replica(tmp_path / "a.sqlite3", redis) as (outbox, fleet):
        publishing = asyncio.Event()

        async def apply_losing_the_cancel(keys: list[str], args: list[object]) -> int:
            publishing.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)
            return 1

        fleet._apply = apply_losing_the_cancel  # type: ignore[assignment]
        await outbox.append(SCENARIO[0])
        await eventually(publishing.is_set, within=10)
        # In a task of its own: awaiting close() under a timeout would let the old close()
        # swallow the timeout's cancellation too and look as if it had returned.
        closing = asyncio.create_task(fleet.close())
        done, _ = await asyncio.wait([closing], timeout=10)
        assert closing in done
        closing.result()


class SlowStatements:
    """The publisher's SQLite connection, with each statement taking a while to run."""

    def __init__(self, conn: sqlite3.Connection, order: list[str]) -> None:
        self._conn = conn
        self._order = order

    def execute(self, sql: str, parameters: tuple[object, ...] = ()) -> sqlite3.Cursor:
        self._order.append("statement")
        time.sleep(0.2)
        cursor = self._conn.execute(sql, parameters)
        self._order.append("statement done")
        return cursor

    def close(self) -> None:
        self._order.append("close")
        self._conn.close()


async def test_close_waits_for_a_statement_its_cancelled_publish_left_running(
    tmp_path: Path, redis: Redis
) -> None:
    # A cancelled `to_thread` leaves its thread on the connection; closing it under a
    # running statement crashed the test process (SIGSEGV in CI-like runs).
    order: list[str] = []
    async with replica(tmp_path / "a.sqlite3", redis) as (_outbox, fleet):
        assert fleet._conn is not None
        fleet._conn = SlowStatements(fleet._conn, order)  # type: ignore[assignment]
        await eventually(lambda: "statement" in order, within=10)
        # No last attempt: nothing else waits for the statement to end.
        await fleet.close(last_attempt=0)  # cancels the publisher while its statement runs
    assert order[-1] == "close"
    assert order.count("statement") == order.count("statement done")
