"""The event endpoint fails in every way, then recovers: nothing is lost, retries back off
within their cap, memory stays flat, and a 4xx is dead-lettered where an operator sees it."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.reliability.support import (
    DATAFILE,
    TimedReceiver,
    free_port,
    metrics,
    record,
    rss_mb,
    url_for,
)
from tests.support.daemon import Process, spawn
from tests.support.polling import eventually
from tests.support.receiver import Reply
from trackd.events.dispatcher import Dispatcher
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

STALL = 30.0  # seconds the endpoint holds one request; the daemon's HTTP timeout is 10 s
BACKOFF_MAX = 60.0  # Dispatcher's default cap
ROUNDS = 40  # producer rounds, each: 5 Track calls and a TrackStream batch of 100


def retry_lines(process: Process) -> list[dict[str, object]]:
    return [line for line in process.log_lines() if line.get("event") == "event_delivery_retry"]


async def test_refused_500_429_stall_then_recovery_loses_nothing(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet: connections are refused
    args = ("--datafile", str(DATAFILE), "--event-endpoint", url_for(port))
    args += ("--metrics-listen", "127.0.0.1:0", "--event-flush-interval", "0.2")
    sent_ids: set[str] = set()
    track_uuids: set[str] = set()
    rss: list[float] = []
    started = time.monotonic()
    with spawn(tmp_path / "data", *args) as process:
        metrics_at = next(x["metrics"] for x in process.log_lines() if x.get("event") == "started")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{process.port}") as channel:
            stub = pb_grpc.TrackingServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)

            async def produce() -> None:
                """Bounded load across the whole outage: ROUNDS x 105 events, 0.25 s apart."""
                for round_ in range(ROUNDS):
                    for n in range(5):
                        user = f"t{round_}-{n}"
                        reply = await stub.Track(pb.TrackRequest(event_key="signup", user_id=user))
                        track_uuids.add(reply.uuid)
                        sent_ids.add(user)
                    users = [f"s{round_}-{n}" for n in range(100)]

                    async def one(
                        batch: list[str] = users, seq: int = round_
                    ) -> AsyncIterator[pb.TrackStreamRequest]:
                        yield pb.TrackStreamRequest(
                            sequence=seq,
                            events=[pb.TrackRequest(event_key="signup", user_id=u) for u in batch],
                        )

                    acks = [ack async for ack in stub.TrackStream(one())]
                    assert [(a.code, a.accepted) for a in acks] == [(0, 100)]
                    sent_ids.update(users)
                    rss.append(rss_mb(process.popen.pid))
                    status = await health.Check(health_pb2.HealthCheckRequest())
                    assert status.status == health_pb2.HealthCheckResponse.SERVING
                    await asyncio.sleep(0.25)

            producer = asyncio.create_task(produce())
            # Refused: wait for the daemon to have retried at least once against a closed port.
            await eventually(lambda: len(retry_lines(process)) >= 1, within=20)
            async with TimedReceiver(port) as receiver:
                receiver.script(
                    Reply(200, delay=STALL),  # a stall: the daemon times out and retries
                    500,
                    Reply(429, {"Retry-After": "1"}),
                    503,
                )
                await producer
                await eventually(
                    lambda: sent_ids <= {v["visitor_id"] for v in receiver.visitors}, within=60
                )
                # The stalled request is answered (200) at last, after the daemon gave up on it:
                # the batch it held arrives twice, with the same uuids.
                await receiver.wait_until(
                    lambda r: len(r.event_uuids) > len(set(r.event_uuids)), within=STALL + 15
                )

                # A 4xx is refused for good: dead-lettered, counted and logged.
                receiver.script(Reply(400, body=b"malformed batch"))
                await stub.Track(pb.TrackRequest(event_key="signup", user_id="dead-letter-1"))
                await eventually(
                    lambda: any(
                        x.get("event") == "events_dead_lettered" for x in process.log_lines()
                    ),
                    within=20,
                )
                after = await stub.Track(pb.TrackRequest(event_key="signup", user_id="after-dl"))
                await eventually(lambda: after.uuid in receiver.event_uuids, within=20)
                samples = await metrics(metrics_at)
                rss.append(rss_mb(process.popen.pid))
        assert process.stop() == 0

    retries = retry_lines(process)
    dead = [x for x in process.log_lines() if x.get("event") == "events_dead_lettered"]
    delivered = [v["visitor_id"] for v in receiver.visitors]
    uuids = receiver.event_uuids
    statuses = [r.status for r in receiver.requests]
    # Gaps between failed attempts as the endpoint saw them (the 429 asked for 1 s).
    gaps = [round(b - a, 2) for a, b in zip(receiver.times, receiver.times[1:], strict=False)]
    warm = rss[len(rss) // 4]
    figures = {
        "events_sent": len(sent_ids),
        "delivered_unique": len(set(delivered) & sent_ids),
        "lost": len(sent_ids - set(delivered)),
        "duplicates_by_uuid": len(uuids) - len(set(uuids)),
        "retries_logged": len(retries),
        "retry_delays_s": [x["delay_s"] for x in retries],
        "max_retry_delay_s": max(float(x["delay_s"]) for x in retries),  # type: ignore[arg-type]
        "first_request_statuses": statuses[:6],
        "first_request_gaps_s": gaps[:6],
        "dead_lettered_events_metric": samples.get("trackd_events_dead_lettered_total"),
        "dead_letter_log_status": dead[0].get("status") if dead else None,
        "retries_metric": samples.get("trackd_delivery_retries_total"),
        "outbox_depth_at_end": samples.get("trackd_outbox_depth_events"),
        "rss_mb_warm": round(warm, 1),
        "rss_mb_max": round(max(rss), 1),
        "rss_mb_end": round(rss[-1], 1),
        "seconds": round(time.monotonic() - started, 1),
    }
    record("endpoint_outage", **figures)
    assert not sent_ids - set(delivered), "events lost in the outage"
    assert set(track_uuids) <= set(uuids)
    assert all(float(x["delay_s"]) <= BACKOFF_MAX for x in retries)  # type: ignore[arg-type]
    assert any(x["status"] == 429 and x["delay_s"] == 1.0 for x in retries)  # Retry-After won
    assert {None, 500, 429, 503} <= {x["status"] for x in retries}  # refused/timeout, 5xx, 429
    assert any("Timeout" in str(x["detail"]) for x in retries)  # the stall timed out
    assert dead and dead[0]["status"] == 400
    assert samples["trackd_events_dead_lettered_total"] >= 1
    assert "dead-letter-1" not in delivered
    assert samples["trackd_outbox_depth_events"] == 0
    # Memory flat: 4,000+ events queued through the outage did not grow the daemon's RSS
    # beyond noise (they wait on disk, not in memory).
    assert max(rss) <= warm * 1.25 + 10, rss


def test_backoff_is_capped_and_retry_after_is_capped() -> None:
    """Capped exponential backoff with jitter, over hundreds of attempts; Retry-After wins but
    is capped too (an endpoint cannot park delivery for a day)."""
    dispatcher = Dispatcher.__new__(Dispatcher)
    dispatcher.backoff_initial, dispatcher.backoff_max, dispatcher.retry_after_max = 0.5, 60, 300
    dispatcher._rng = random.Random(1)
    delays = [dispatcher._delay(attempt, None) for attempt in range(500)]
    assert all(0 < d <= 60 for d in delays)
    assert min(delays[10:]) >= 30  # at the cap: between half of it and all of it
    assert dispatcher._delay(3, 1.0) == 1.0
    assert dispatcher._delay(3, 86_400.0) == 300
    assert dispatcher._delay(3, float("inf")) == 300
