"""SIGKILL at random points under streaming load: every acknowledged event still arrives,
with either `--outbox-sync` (a power loss, which `normal` may lose the last second to, cannot
be simulated here)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import random
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from tests.reliability.support import DATAFILE, record
from tests.support.daemon import Process, spawn
from tests.support.receiver import Receiver
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

KILLS = 6
TOTAL_EVENTS = 200_000
BATCH = 1000
PRODUCERS = 2
IN_FLIGHT = 4  # batches written but not yet acknowledged, per stream
SEED = 20261128


class Ledger:
    """What the producers sent and what the daemon acknowledged, by producer-side id."""

    def __init__(self) -> None:
        self.next_id = 0
        self.sequences = itertools.count(1)
        self.sent: dict[int, range] = {}
        self.acked: set[int] = set()

    def take(self) -> tuple[int, range]:
        ids = range(self.next_id, self.next_id + BATCH)
        self.next_id += BATCH
        sequence = next(self.sequences)
        self.sent[sequence] = ids
        return sequence, ids


class Delivered:
    """Reads the receiver's accepted batches incrementally (it holds 200k+ visitors)."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.read = 0
        self.by_id: collections.Counter[int] = collections.Counter()
        self.by_uuid: collections.Counter[str] = collections.Counter()

    def update(self) -> None:
        batches = self.receiver.received
        for batch in batches[self.read :]:
            for visitor in batch["visitors"]:
                self.by_id[int(visitor["visitor_id"][1:])] += 1
                for snapshot in visitor["snapshots"]:
                    for event in snapshot["events"]:
                        self.by_uuid[event["uuid"]] += 1
        self.read = len(batches)


async def produce(stub: pb_grpc.TrackingServiceStub, ledger: Ledger, stop: asyncio.Event) -> None:
    window = asyncio.Semaphore(IN_FLIGHT)

    async def acquired() -> bool:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):  # wake up now and then to look at `stop`
                    await window.acquire()
                    return True
        return False

    async def batches() -> AsyncIterator[pb.TrackStreamRequest]:
        while await acquired():
            sequence, ids = ledger.take()
            yield pb.TrackStreamRequest(
                sequence=sequence,
                events=[pb.TrackRequest(event_key="signup", user_id=f"c{n}") for n in ids],
            )

    call = stub.TrackStream(batches())
    try:
        async for ack in call:
            window.release()
            ids = ledger.sent[ack.sequence]
            assert (ack.code, ack.accepted, list(ack.errors)) == (0, len(ids), [])
            ledger.acked.update(ids)
    except grpc.aio.AioRpcError as error:  # the daemon was killed under it
        # UNAVAILABLE, or INTERNAL "Internal error from Core" when the client's own write
        # fails on the dead connection: both are the client library seeing the kill.
        assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL), error
    finally:
        call.cancel()


async def one_life(process: Process, ledger: Ledger, until_acked: int, kill_after: float) -> None:
    """Streams until `until_acked` events are acknowledged, then SIGKILLs mid-stream."""
    stop = asyncio.Event()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{process.port}") as channel:
        stub = pb_grpc.TrackingServiceStub(channel)
        producers = [asyncio.create_task(produce(stub, ledger, stop)) for _ in range(PRODUCERS)]
        async with asyncio.timeout(60):
            while len(ledger.acked) < until_acked:
                assert not all(p.done() for p in producers), "producers stopped early"
                await asyncio.sleep(0.01)
        await asyncio.sleep(kill_after)
        if kill_after >= 0:
            process.popen.send_signal(signal.SIGKILL)
            process.popen.wait(timeout=10)
        stop.set()
        async with asyncio.timeout(30):
            await asyncio.gather(*producers)


@pytest.mark.parametrize(
    ("outbox_sync", "scenario"), [("full", "crash"), ("normal", "crash_outbox_sync_normal")]
)
async def test_every_acknowledged_event_survives_repeated_sigkills(
    tmp_path: Path, outbox_sync: str, scenario: str
) -> None:
    rng = random.Random(SEED)
    data_dir = tmp_path / "data"
    ledger = Ledger()
    started = time.monotonic()
    args = ("--datafile", str(DATAFILE), "--event-batch-size", str(BATCH))
    args += ("--outbox-sync", outbox_sync)
    args += ("--event-flush-interval", "0.2")
    async with Receiver() as receiver:
        delivered = Delivered(receiver)
        # Kill points spread at random over the run (by acknowledged events).
        targets = sorted(rng.sample(range(10_000, TOTAL_EVENTS * 9 // 10, BATCH), KILLS))
        for target in targets:
            with spawn(data_dir, *args, "--event-endpoint", receiver.url) as process:
                lines = process.log_lines()
                assert [
                    line["outbox_sync"] for line in lines if line.get("event") == "started"
                ] == [outbox_sync]
                await one_life(process, ledger, target, kill_after=rng.uniform(0.0, 0.3))
        # The last life tops up to TOTAL_EVENTS, then only delivers, and stops cleanly.
        with spawn(data_dir, *args, "--event-endpoint", receiver.url) as process:
            await one_life(process, ledger, TOTAL_EVENTS, kill_after=-1)

            async def all_delivered() -> None:
                while True:
                    delivered.update()
                    if ledger.acked <= delivered.by_id.keys():
                        return
                    await asyncio.sleep(0.25)

            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(90):
                    await all_delivered()
            await asyncio.sleep(0.5)
            assert process.stop() == 0
        delivered.update()

    lost = ledger.acked - delivered.by_id.keys()
    sent = ledger.next_id
    figures = {
        "kills": KILLS,
        "events_sent": sent,
        "events_acked": len(ledger.acked),
        "unacked_sent": sent - len(ledger.acked),
        "delivered_unique": len(delivered.by_id),
        "delivered_total": sum(delivered.by_id.values()),
        "duplicates_by_uuid": sum(n - 1 for n in delivered.by_uuid.values() if n > 1),
        "duplicates_by_id": sum(n - 1 for n in delivered.by_id.values() if n > 1),
        "unacked_but_delivered": len(delivered.by_id.keys() - ledger.acked),
        "lost": len(lost),
        "seconds": round(time.monotonic() - started, 1),
    }
    record(scenario, **figures)
    assert len(ledger.acked) >= TOTAL_EVENTS
    assert not lost, f"{len(lost)} acknowledged events never arrived: {sorted(lost)[:10]}"
    # Duplicates are fine (at least once) but always the same event: same uuid, same id.
    assert figures["duplicates_by_uuid"] == figures["duplicates_by_id"]
    assert set(delivered.by_id) <= set(range(sent))
