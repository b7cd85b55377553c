"""Acknowledged events survive a SIGKILL: a restarted daemon delivers every one of them."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from tests.integration.test_decisions_api import DATAFILE
from tests.support.daemon import spawn
from tests.support.receiver import Receiver, Reply
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc


@pytest.mark.slow
async def test_every_acknowledged_event_is_delivered_after_sigkill_and_restart(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    acked_uuids: set[str] = set()
    acked_stream_events = 0
    async with Receiver(default=Reply(503)) as down:
        with spawn(data_dir, "--datafile", str(DATAFILE), "--event-endpoint", down.url) as first:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
                stub = pb_grpc.TrackingServiceStub(channel)
                for n in range(50):
                    reply = await stub.Track(pb.TrackRequest(event_key="signup", user_id=f"k{n}"))
                    acked_uuids.add(reply.uuid)

                async def batches() -> AsyncIterator[pb.TrackStreamRequest]:
                    for sequence in range(20):
                        yield pb.TrackStreamRequest(
                            sequence=sequence,
                            events=[
                                pb.TrackRequest(event_key="signup", user_id=f"s{sequence}-{i}")
                                for i in range(100)
                            ],
                        )

                async for ack in stub.TrackStream(batches()):
                    acked_stream_events += ack.accepted
            first.popen.send_signal(signal.SIGKILL)
            first.popen.wait(timeout=10)
    assert acked_stream_events == 2000

    async with Receiver() as up:
        with spawn(data_dir, "--datafile", str(DATAFILE), "--event-endpoint", up.url) as second:
            await up.wait_for_events(2050, within=60)
            await asyncio.sleep(0.3)
            assert second.stop() == 0
    delivered = up.event_uuids
    assert acked_uuids <= set(delivered)
    assert len(set(delivered)) == 2050
    stream_users = {v["visitor_id"] for v in up.visitors if v["visitor_id"].startswith("s")}
    assert len(stream_users) == 2000
