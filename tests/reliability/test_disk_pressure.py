"""The outbox cap reached while the endpoint is down: Track is refused with
RESOURCE_EXHAUSTED, Activate still decides, and everything recovers once it drains."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.reliability.support import DATAFILE, TimedReceiver, free_port, metrics, record, url_for
from tests.support.daemon import spawn
from tests.support.polling import eventually
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

CAP = 1000


async def test_a_full_outbox_refuses_tracks_until_the_endpoint_drains_it(tmp_path: Path) -> None:
    port = free_port()
    args = ("--datafile", str(DATAFILE), "--event-endpoint", url_for(port))
    args += ("--outbox-max-events", str(CAP), "--metrics-listen", "127.0.0.1:0")
    started = time.monotonic()
    accepted: set[str] = set()
    with spawn(tmp_path / "data", *args) as process:
        metrics_at = next(x["metrics"] for x in process.log_lines() if x.get("event") == "started")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{process.port}") as channel:
            stub = pb_grpc.TrackingServiceStub(channel)

            async def batches() -> AsyncIterator[pb.TrackStreamRequest]:
                for sequence in range(15):  # 1,500 events offered against a cap of 1,000
                    yield pb.TrackStreamRequest(
                        sequence=sequence,
                        events=[
                            pb.TrackRequest(event_key="signup", user_id=f"d{sequence}-{n}")
                            for n in range(100)
                        ],
                    )

            acks = [ack async for ack in stub.TrackStream(batches())]
            for ack in acks:
                if ack.code == 0:
                    accepted.update(f"d{ack.sequence}-{n}" for n in range(100))
            refused_batches = [
                a for a in acks if a.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            ]
            assert len(accepted) == CAP and len(refused_batches) == 5
            assert all(a.accepted == 0 and "outbox" in a.message for a in refused_batches)

            with pytest.raises(grpc.aio.AioRpcError) as full:
                await stub.Track(pb.TrackRequest(event_key="signup", user_id="one-more"))
            assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            decided = await stub.Activate(
                pb.ActivateRequest(experiment_key="ab_running", user_id="while-full")
            )
            assert decided.variation_key and not decided.impression_recorded
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest()
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            full_depth = (await metrics(metrics_at))["trackd_outbox_depth_events"]

            async with TimedReceiver(port) as receiver:
                drained_from = time.monotonic()
                await eventually(
                    lambda: accepted <= {v["visitor_id"] for v in receiver.visitors}, within=60
                )
                drain_seconds = time.monotonic() - drained_from
                reply = await stub.Track(pb.TrackRequest(event_key="signup", user_id="after"))
                await eventually(lambda: reply.uuid in receiver.event_uuids, within=20)
                after = await metrics(metrics_at)
        assert process.stop() == 0
    record(
        "disk_pressure",
        outbox_cap=CAP,
        events_offered=1500 + 1,
        events_accepted=len(accepted),
        batches_refused_resource_exhausted=len(refused_batches),
        track_when_full="RESOURCE_EXHAUSTED",
        activate_when_full="OK (no impression recorded)",
        depth_when_full=full_depth,
        drain_seconds_after_endpoint_up=round(drain_seconds, 2),
        depth_after_drain=after["trackd_outbox_depth_events"],
        lost=len(accepted - {v["visitor_id"] for v in receiver.visitors}),
        seconds=round(time.monotonic() - started, 1),
    )
    assert after["trackd_outbox_depth_events"] == 0
