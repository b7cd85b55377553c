"""SIGKILL mid-stream, restart on the same data dir, resend every unacknowledged batch with
its producer_id and sequence: each event reaches the receiver as exactly one event."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from tests.reliability.support import DATAFILE, record
from tests.support.daemon import Process, spawn
from tests.support.receiver import Receiver
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

PRODUCER_ID = "reliability-producer-1"
BATCH = 500
TOTAL_EVENTS = 40_000
IN_FLIGHT = 4  # batches sent but not yet acknowledged
# Per life: events acknowledged before the kill, and how long the producer then stops
# reading acknowledgements before the SIGKILL. 0 kills with batches mid-commit; the longer
# pauses let sent batches commit whose acknowledgements the producer never sees, the case
# a resend without deduplication stores twice.
LIVES = ((4_000, 0.0), (10_000, 0.3), (18_000, 0.05), (26_000, 0.5))


class Producer:
    """The producer's side: every batch it made, and those not yet acknowledged, in order."""

    def __init__(self) -> None:
        self.next_id = 0
        self.next_sequence = 1
        self.batches: dict[int, range] = {}
        self.unacked: dict[int, None] = {}  # an ordered set of sequences
        self.acked_events = 0
        self.duplicates = 0  # acknowledgements marked duplicate
        self.resent = 0  # batches sent again after a kill

    def new_batch(self) -> int:
        sequence = self.next_sequence
        self.next_sequence += 1
        self.batches[sequence] = range(self.next_id, self.next_id + BATCH)
        self.next_id += BATCH
        self.unacked[sequence] = None
        return sequence

    def request(self, sequence: int) -> pb.TrackStreamRequest:
        events = [
            pb.TrackRequest(event_key="signup", user_id=f"x{n}") for n in self.batches[sequence]
        ]
        return pb.TrackStreamRequest(producer_id=PRODUCER_ID, sequence=sequence, events=events)

    def acknowledged(self, ack: pb.TrackStreamResponse) -> None:
        # A duplicate carries the first commit's counts: the whole batch, as before.
        assert (ack.code, ack.accepted, list(ack.errors)) == (0, BATCH, []), ack
        if ack.sequence in self.unacked:
            del self.unacked[ack.sequence]
            self.acked_events += BATCH
        self.duplicates += ack.duplicate


async def one_life(process: Process, producer: Producer, until_acked: int, pause: float) -> None:
    """Resends what is unacknowledged and streams new batches until `until_acked` events are
    acknowledged; then stops reading acknowledgements for `pause` seconds and SIGKILLs the
    daemon, or with pause < 0 ends the stream cleanly."""
    stop = asyncio.Event()
    reached = asyncio.Event()  # until_acked events acknowledged, or the stream ended
    reading = True
    window = asyncio.Semaphore(IN_FLIGHT)

    async def acquired() -> bool:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):  # wake up now and then to look at `stop`
                    await window.acquire()
                    return True
        return False

    async def batches() -> AsyncIterator[pb.TrackStreamRequest]:
        for sequence in list(producer.unacked):
            if not await acquired():
                return
            producer.resent += 1
            yield producer.request(sequence)
        while producer.next_id < TOTAL_EVENTS and await acquired():
            yield producer.request(producer.new_batch())

    async def consume(call: grpc.aio.StreamStreamCall) -> None:  # type: ignore[type-arg]
        try:
            async for ack in call:
                if reading:
                    producer.acknowledged(ack)
                    window.release()
                    if producer.acked_events >= until_acked:
                        reached.set()
        except grpc.aio.AioRpcError as error:  # the daemon was killed under it
            assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL), error
        finally:
            reached.set()

    async with grpc.aio.insecure_channel(f"127.0.0.1:{process.port}") as channel:
        call = pb_grpc.TrackingServiceStub(channel).TrackStream(batches())
        consumer = asyncio.create_task(consume(call))
        try:
            async with asyncio.timeout(60):
                await reached.wait()
                if pause >= 0:
                    reading = False
                    await asyncio.sleep(pause)
                    process.popen.send_signal(signal.SIGKILL)
                    process.popen.wait(timeout=10)
                stop.set()
                await consumer
        finally:
            call.cancel()


async def test_resent_batches_are_counted_exactly_once_across_sigkills(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    producer = Producer()
    started = time.monotonic()
    args = ("--datafile", str(DATAFILE), "--event-batch-size", "1000")
    args += ("--event-flush-interval", "0.2")
    async with Receiver() as receiver:
        for until_acked, pause in LIVES:
            with spawn(data_dir, *args, "--event-endpoint", receiver.url) as process:
                await one_life(process, producer, until_acked, pause)
        # The last life resends what is left, tops up to TOTAL_EVENTS and stops cleanly.
        with spawn(data_dir, *args, "--event-endpoint", receiver.url) as process:
            await one_life(process, producer, TOTAL_EVENTS, -1)
            assert not producer.unacked
            with contextlib.suppress(TimeoutError):
                await receiver.wait_until(
                    lambda r: len({v["visitor_id"] for v in r.visitors}) >= TOTAL_EVENTS,
                    within=90,
                )
            await asyncio.sleep(0.5)
            assert process.stop() == 0

    uuids_by_id: dict[int, set[str]] = collections.defaultdict(set)
    deliveries = 0
    for visitor in receiver.visitors:
        for snapshot in visitor["snapshots"]:
            for event in snapshot["events"]:
                uuids_by_id[int(visitor["visitor_id"][1:])].add(event["uuid"])
                deliveries += 1
    figures = {
        "kills": len(LIVES),
        "events": TOTAL_EVENTS,
        "batches_resent": producer.resent,
        "acknowledged_as_duplicate": producer.duplicates,
        "events_arrived": len(uuids_by_id),
        "events_stored_twice": sum(len(u) - 1 for u in uuids_by_id.values()),
        # The same event (same uuid) redelivered: the dispatcher is at least once, and the
        # Event API counts a uuid once.
        "redelivered_same_uuid": deliveries - sum(len(u) for u in uuids_by_id.values()),
        "seconds": round(time.monotonic() - started, 1),
    }
    record("exactly_once", **figures)
    assert producer.acked_events == TOTAL_EVENTS
    # The case this guards was exercised: committed batches whose acknowledgement was lost.
    assert producer.duplicates > 0, figures
    assert set(uuids_by_id) == set(range(TOTAL_EVENTS)), figures
    assert figures["events_stored_twice"] == 0, figures
