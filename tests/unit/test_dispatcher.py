"""Delivery: batches to a real local HTTP receiver (or a file), retried, dead-lettered,
acknowledged in the outbox only once accepted."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.support.receiver import Receiver, Reply
from tests.unit.test_outbox import _config, conversions, run_and_kill
from trackd.events.dispatcher import Dispatcher
from trackd.events.outbox import Outbox
from trackd.events.sinks import Delivery, open_sink
from trackd.events.sinks.file import FileSink
from trackd.events.sinks.http import retry_after_seconds

FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    async with Outbox(tmp_path / "outbox.sqlite3") as opened:
        yield opened


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as started:
        yield started


def dispatcher(outbox: Outbox, endpoint: str, **options: Any) -> Dispatcher:
    return Dispatcher(outbox, open_sink(endpoint), **{**FAST, **options})


async def drained(outbox: Outbox) -> None:
    """Waits until the outbox has recorded every delivery (the receiver sees a batch a
    moment before the dispatcher acknowledges it)."""
    for _ in range(500):
        if not outbox.depth:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{outbox.depth} events still undelivered")


async def test_full_batches_go_at_once_and_the_rest_after_the_flush_interval(
    outbox: Outbox, receiver: Receiver
) -> None:
    records = conversions(250)
    await outbox.append(records)
    sender = dispatcher(outbox, receiver.url, batch_size=100, flush_interval=1.0)
    started = time.monotonic()
    sender.start()
    try:
        await receiver.wait_for_events(200)
        # The full batches went without waiting; the partial one only after the interval.
        # (On a loaded machine the interval can pass before this line runs: the first two
        # batches are the full ones whatever came after them.)
        assert [len(batch["visitors"]) for batch in receiver.received[:2]] == [100, 100]
        await receiver.wait_for_events(250)
        assert time.monotonic() - started >= 0.95
        await drained(outbox)
    finally:
        await sender.aclose()
    assert [len(batch["visitors"]) for batch in receiver.received] == [100, 100, 50]
    assert receiver.event_uuids == [r.uuid for r in records]
    assert receiver.requests[0].headers["content-type"] == "application/json"
    assert outbox.depth == 0
    assert sender.delivered_events == 250


async def test_batches_encoded_in_a_worker_process_are_the_same_bytes(
    outbox: Outbox, receiver: Receiver, tmp_path: Path
) -> None:
    records = conversions(120)
    await outbox.append(records)
    before = set(multiprocessing.active_children())
    sender = dispatcher(outbox, receiver.url, batch_size=50, encoder_process=True)
    sender.start()
    try:
        await receiver.wait_for_events(120)
        await drained(outbox)
        assert set(multiprocessing.active_children()) - before  # the encoder process
    finally:
        await sender.aclose()
    assert [len(batch["visitors"]) for batch in receiver.received] == [50, 50, 20]
    assert receiver.event_uuids == [r.uuid for r in records]
    from trackd.events import payload

    context = records[0].context
    assert receiver.requests[0].body == payload.encode_batch(context, records[:50])


async def test_batches_are_encoded_in_the_daemon_process_by_default(
    outbox: Outbox, receiver: Receiver
) -> None:
    await outbox.append(conversions(10))
    before = set(multiprocessing.active_children())
    sender = dispatcher(outbox, receiver.url, batch_size=10)
    sender.start()
    try:
        await receiver.wait_for_events(10)
        await drained(outbox)
        assert set(multiprocessing.active_children()) - before == set()
    finally:
        await sender.aclose()


async def test_events_appended_while_running_are_delivered(
    outbox: Outbox, receiver: Receiver
) -> None:
    sender = dispatcher(outbox, receiver.url, batch_size=10, flush_interval=0.05)
    sender.start()
    try:
        expected = []
        for i in range(20):
            batch = conversions(3, user=f"r{i}-")
            expected += [r.uuid for r in batch]
            await outbox.append(batch)
        await receiver.wait_for_events(60)
    finally:
        await sender.aclose()
    assert receiver.event_uuids == expected


async def test_a_500_is_retried_until_accepted(outbox: Outbox, receiver: Receiver) -> None:
    receiver.script(500, 503)
    await outbox.append(conversions(5))
    sender = dispatcher(outbox, receiver.url, batch_size=5)
    sender.start()
    try:
        await receiver.wait_for_events(5)
        await drained(outbox)
    finally:
        await sender.aclose()
    assert [r.status for r in receiver.requests] == [500, 503, 200]
    assert receiver.requests[0].body == receiver.requests[2].body  # the same batch again
    assert sender.retries == 2
    assert outbox.depth == 0


async def test_a_dropped_connection_is_retried(outbox: Outbox, receiver: Receiver) -> None:
    receiver.script(Reply(drop=True))
    await outbox.append(conversions(2))
    sender = dispatcher(outbox, receiver.url, batch_size=2)
    sender.start()
    try:
        await receiver.wait_for_events(2)
    finally:
        await sender.aclose()
    assert [r.status for r in receiver.requests] == [None, 200]


async def test_429_waits_as_long_as_retry_after_says(outbox: Outbox, receiver: Receiver) -> None:
    receiver.script(Reply(429, {"Retry-After": "1"}))
    await outbox.append(conversions(1))
    sender = dispatcher(outbox, receiver.url, batch_size=1)
    times: list[float] = []
    sender.start()
    try:
        await receiver.wait_for_requests(1)
        times.append(time.monotonic())
        await receiver.wait_for_events(1)
        times.append(time.monotonic())
    finally:
        await sender.aclose()
    assert times[1] - times[0] >= 0.9


async def test_retry_after_is_capped(outbox: Outbox, receiver: Receiver) -> None:
    receiver.script(Reply(429, {"Retry-After": "3600"}))
    await outbox.append(conversions(1))
    sender = dispatcher(outbox, receiver.url, batch_size=1, retry_after_max=0.1)
    sender.start()
    try:
        await receiver.wait_for_events(1, within=2.0)
    finally:
        await sender.aclose()


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


async def test_a_400_is_dead_lettered_logged_and_delivery_goes_on(
    outbox: Outbox, receiver: Receiver
) -> None:
    receiver.script(Reply(400, body=b"bad event"))
    first, second = conversions(2, "a"), conversions(2, "b")
    await outbox.append(first)
    await outbox.append(second)
    sender = dispatcher(outbox, receiver.url, batch_size=2)
    with capture_logs() as logs:
        sender.start()
        try:
            await receiver.wait_for_events(2)
            await drained(outbox)
        finally:
            await sender.aclose()
    assert receiver.event_uuids == [r.uuid for r in second]
    (letter,) = await outbox.dead_letters()
    assert (letter.status, letter.reason, letter.events) == (400, "bad event", 2)
    assert [v["visitor_id"] for v in json.loads(letter.body)["visitors"]] == ["a0", "a1"]
    assert (await outbox.stats()).dead_lettered_events == 2
    assert sender.dead_lettered_events == 2
    (logged,) = [e for e in logs if e["event"] == "events_dead_lettered"]
    assert (logged["log_level"], logged["status"], logged["events"]) == ("error", 400, 2)
    assert outbox.depth == 0


async def test_the_file_sink_appends_one_batch_per_line(outbox: Outbox, tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.jsonl"
    records = conversions(7)
    await outbox.append(records)
    sender = dispatcher(outbox, f"file://{path}", batch_size=3)
    flushed = await sender.flush(asyncio.get_running_loop().time() + 5)
    await sender.aclose()
    lines = path.read_text().splitlines()
    assert flushed == 7
    assert [len(json.loads(line)["visitors"]) for line in lines] == [3, 3, 1]
    uuids = [
        v["snapshots"][0]["events"][0]["uuid"]
        for line in lines
        for v in json.loads(line)["visitors"]
    ]
    assert uuids == [r.uuid for r in records]


class CountingFileSink(FileSink):
    """The real file sink, counting how many batches each write carried."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes: list[int] = []

    async def send_all(self, bodies: Sequence[bytes]) -> list[Delivery]:
        self.writes.append(len(bodies))
        return await super().send_all(bodies)


async def test_a_backlog_goes_in_rounds_of_batches_sharing_one_write_and_one_ack(
    outbox: Outbox, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    records = [r for n in range(20) for r in conversions(25, f"row{n}-")]  # 500 events
    for start in range(0, 500, 25):
        await outbox.append(records[start : start + 25])
    sink = CountingFileSink(path)
    sender = Dispatcher(outbox, sink, batch_size=10, flush_interval=0.05, **FAST)
    commits_before = (await outbox.stats()).commits
    sender.start()
    try:
        await drained(outbox)
    finally:
        await sender.aclose()
    lines = path.read_text().splitlines()
    assert [len(json.loads(line)["visitors"]) for line in lines] == [10] * 50
    uuids = [
        v["snapshots"][0]["events"][0]["uuid"]
        for line in lines
        for v in json.loads(line)["visitors"]
    ]
    assert uuids == [r.uuid for r in records]  # in order, each once
    assert sink.writes == [16, 16, 16, 2]
    assert sender.batches_sent == 50
    assert sender.delivered_events == 500
    # One acknowledgement commit per round (4), not one per batch (50).
    assert (await outbox.stats()).commits - commits_before <= 8


async def test_a_failure_inside_a_round_is_retried_and_nothing_is_sent_twice(
    outbox: Outbox, receiver: Receiver
) -> None:
    # The round's six batches go out together; the third request to arrive fails once.
    # The batches after it that were delivered are acknowledged once it is, not resent.
    receiver.script(200, 200, 500)
    records = conversions(60)
    await outbox.append(records)
    sender = dispatcher(outbox, receiver.url, batch_size=10)
    sender.start()
    try:
        await receiver.wait_for_events(60)
        await drained(outbox)
    finally:
        await sender.aclose()
    assert sorted(r.status or 0 for r in receiver.requests) == [200] * 6 + [500]
    assert sorted(receiver.event_uuids) == sorted(r.uuid for r in records)  # each once
    assert sender.retries == 1
    assert sender.delivered_events == 60
    assert outbox.depth == 0


async def test_a_round_is_posted_concurrently_within_the_connection_pool(
    outbox: Outbox,
) -> None:
    # A slow endpoint (as logx is, tens of milliseconds away) gets the round's batches in
    # parallel, at most as many at a time as the pool has connections.
    async with Receiver(default=Reply(200, delay=0.2)) as slow:
        await outbox.append(conversions(60))
        sender = Dispatcher(outbox, open_sink(slow.url, max_connections=4), batch_size=10, **FAST)
        flushed = await sender.flush(asyncio.get_running_loop().time() + 10)
        await sender.aclose()
        assert flushed == 60
        assert len(slow.requests) == 6
        assert slow.max_in_flight == 4
        assert sorted(len(batch["visitors"]) for batch in slow.received) == [10] * 6


async def test_batches_never_mix_revisions(outbox: Outbox, receiver: Receiver) -> None:
    await outbox.append(conversions(2, config=_config(revision="7")))
    await outbox.append(conversions(2, config=_config(revision="8")))
    sender = dispatcher(outbox, receiver.url, batch_size=10, flush_interval=0.05)
    sender.start()
    try:
        await receiver.wait_for_events(4)
    finally:
        await sender.aclose()
    assert [(b["revision"], len(b["visitors"])) for b in receiver.received] == [("7", 2), ("8", 2)]


async def test_flush_makes_one_attempt_and_leaves_the_rest_in_the_outbox(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A row of 10 events in batches of 3: two batches go, the third fails, and after a
    restart exactly the 4 undelivered events go: progress inside a row is kept.

    One connection, so the batches go one at a time and the scripted 500 meets the third."""
    path = tmp_path / "outbox.sqlite3"
    records = conversions(10)
    receiver.script(200, 200, 500)
    async with Outbox(path) as outbox:
        await outbox.append(records)
        sink = open_sink(receiver.url, max_connections=1)
        sender = Dispatcher(outbox, sink, batch_size=3, flush_interval=60, **FAST)
        sender.start()
        assert await sender.stop(deadline=asyncio.get_running_loop().time() + 5) == 6
        assert outbox.depth == 4
    assert len(receiver.requests) == 3
    async with Outbox(path) as outbox:
        assert outbox.depth == 4
        sender = dispatcher(outbox, receiver.url, batch_size=3, flush_interval=60)
        assert await sender.stop(deadline=asyncio.get_running_loop().time() + 5) == 4
    assert receiver.event_uuids == [r.uuid for r in records]


async def test_flush_gives_up_at_the_deadline(outbox: Outbox, receiver: Receiver) -> None:
    receiver.script(Reply(200, delay=2.0))
    await outbox.append(conversions(3))
    sender = dispatcher(outbox, receiver.url, batch_size=3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await sender.stop(deadline=started + 0.3) == 0
    assert loop.time() - started < 1.0
    assert outbox.depth == 3


async def test_events_acknowledged_before_a_sigkill_are_delivered_after_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    path = tmp_path / "outbox.sqlite3"
    acknowledged = await asyncio.to_thread(run_and_kill, path, 30)
    async with Outbox(path) as outbox:
        depth = outbox.depth
        sender = dispatcher(outbox, receiver.url, batch_size=500, flush_interval=0.05)
        sender.start()
        try:
            await receiver.wait_for_events(depth)
        finally:
            await sender.aclose()
    delivered = receiver.event_uuids
    assert len(delivered) == len(set(delivered)) == depth
    assert set(acknowledged) <= set(delivered)


async def test_nothing_is_sent_when_the_outbox_is_empty(outbox: Outbox, receiver: Receiver) -> None:
    sender = dispatcher(outbox, receiver.url, batch_size=1, flush_interval=0.01)
    sender.start()
    await asyncio.sleep(0.1)
    await sender.aclose()
    assert receiver.requests == []


async def test_an_undecodable_row_is_dead_lettered_not_retried_forever(
    tmp_path: Path, receiver: Receiver
) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with Outbox(path) as outbox:
        await outbox.append(conversions(1, "before"))
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO outbox (created_ms, n, fmt, body) VALUES (1, 2, 1, x'00ff')")
    async with Outbox(path) as outbox:
        await outbox.append(conversions(1, "after"))
        sender = dispatcher(outbox, receiver.url, batch_size=10)
        assert await sender.stop(deadline=asyncio.get_running_loop().time() + 5) == 4
        (letter,) = await outbox.dead_letters()
        assert letter.status is None
        assert letter.reason.startswith("undecodable outbox row")
        assert (letter.events, letter.body) == (2, b"\x00\xff")
        assert outbox.depth == 0
    assert [v["visitor_id"] for v in receiver.visitors] == ["before0", "after0"]


async def test_a_round_reads_the_outbox_once_when_it_holds_less_than_a_round(
    outbox: Outbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that returns fewer rows than its limit found everything there was: the round
    reads no more (under a steady load of Decides, a second read per round found nothing
    and cost a thread hand-off and a query). The events still all go, in order."""
    records = [r for n in range(10) for r in conversions(25, f"row{n}-")]  # 250 events
    for start in range(0, 250, 25):
        await outbox.append(records[start : start + 25])
    reads: list[int] = []
    read = outbox.read

    async def counted(after_id: int, limit: int, max_events: int | None = None) -> Any:
        rows = await read(after_id, limit, max_events)
        reads.append(len(rows))
        return rows

    monkeypatch.setattr(outbox, "read", counted)
    path = tmp_path / "events.jsonl"
    sender = Dispatcher(outbox, FileSink(path), batch_size=100, **FAST)
    assert await sender.flush(asyncio.get_running_loop().time() + 30) == 250
    # Round one: all ten rows, two batches of 100; round two: nothing new, the last 50.
    assert reads == [10, 0]
    uuids = [
        v["snapshots"][0]["events"][0]["uuid"]
        for line in path.read_text().splitlines()
        for v in json.loads(line)["visitors"]
    ]
    assert uuids == [r.uuid for r in records]
