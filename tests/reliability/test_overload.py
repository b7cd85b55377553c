"""More load than two cores can serve: memory stays bounded, deadlines are honoured, the
stream cap answers RESOURCE_EXHAUSTED, nothing crashes; an idle stream survives keepalive."""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.reliability.support import DATAFILE, record, rss_mb
from tests.support.daemon import spawn
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

STREAM_CAP = 16
STREAMS = 48  # three times the cap
STREAM_BATCHES = 10
UNARY_CALLS = 3000
UNARY_CONCURRENCY = 300
CHANNELS = 4
HANG = 30.0  # a call that has not ended this long after its deadline is a hang


async def test_overload_is_refused_or_slowed_never_crashes(tmp_path: Path) -> None:
    rng = random.Random(5)
    args = ("--datafile", str(DATAFILE), "--max-concurrent-streams", str(STREAM_CAP))
    codes: collections.Counter[str] = collections.Counter()
    stream_codes: collections.Counter[str] = collections.Counter()
    rss: list[float] = []
    late: list[float] = []
    started = time.monotonic()
    with spawn(tmp_path / "data", *args) as process:
        # One connection per channel (grpc shares one between same-target channels otherwise):
        # 75 unary calls + 12 streams each, below the 100 HTTP/2 streams per connection; more
        # on one connection is test_concurrent_unary_calls_beyond_100_on_one_connection_*.
        local = [("grpc.use_local_subchannel_pool", 1)]
        channels = [
            grpc.aio.insecure_channel(f"127.0.0.1:{process.port}", options=local)
            for _ in range(CHANNELS)
        ]
        stubs = [pb_grpc.TrackingServiceStub(c) for c in channels]
        baseline = rss_mb(process.popen.pid)
        gate = asyncio.Semaphore(UNARY_CONCURRENCY)

        async def unary(n: int) -> None:
            deadline = rng.choice([0.001, 0.01, 0.05, 0.5, 5.0])
            stub = stubs[n % CHANNELS]
            async with gate:
                begun = time.monotonic()
                try:
                    async with asyncio.timeout(deadline + HANG):
                        if n % 2:
                            await stub.Activate(
                                pb.ActivateRequest(experiment_key="ab_running", user_id=f"o{n}"),
                                timeout=deadline,
                            )
                        else:
                            await stub.Track(
                                pb.TrackRequest(event_key="signup", user_id=f"o{n}"),
                                timeout=deadline,
                            )
                    codes["OK"] += 1
                except grpc.aio.AioRpcError as error:
                    codes[error.code().name] += 1
                late.append(time.monotonic() - begun - deadline)

        async def stream(n: int) -> None:
            async def batches() -> AsyncIterator[pb.TrackStreamRequest]:
                for sequence in range(STREAM_BATCHES):
                    yield pb.TrackStreamRequest(
                        sequence=sequence,
                        events=[
                            pb.TrackRequest(event_key="signup", user_id=f"st{n}-{sequence}-{i}")
                            for i in range(500)
                        ],
                    )

            try:
                async with asyncio.timeout(120):
                    acks = [a async for a in stubs[n % CHANNELS].TrackStream(batches())]
                assert all(a.code == 0 for a in acks)
                stream_codes["OK"] += 1
            except grpc.aio.AioRpcError as error:
                stream_codes[error.code().name] += 1

        async def sample() -> None:
            while True:
                rss.append(rss_mb(process.popen.pid))
                await asyncio.sleep(0.2)

        sampler = asyncio.create_task(sample())
        await asyncio.gather(
            *(unary(n) for n in range(UNARY_CALLS)), *(stream(n) for n in range(STREAMS))
        )
        sampler.cancel()
        assert process.popen.poll() is None, "the daemon died under load"
        health = await health_pb2_grpc.HealthStub(channels[0]).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        for channel in channels:
            await channel.close()
        assert process.stop() == 0

    record(
        "overload",
        unary_calls=UNARY_CALLS,
        unary_concurrency=UNARY_CONCURRENCY,
        unary_outcomes=dict(codes),
        streams=STREAMS,
        stream_cap=STREAM_CAP,
        stream_outcomes=dict(stream_codes),
        max_seconds_past_deadline=round(max(late), 2),
        rss_mb_baseline=round(baseline, 1),
        rss_mb_max=round(max(rss), 1),
        seconds=round(time.monotonic() - started, 1),
    )
    assert set(codes) <= {"OK", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"}, codes
    assert codes["DEADLINE_EXCEEDED"] > 0  # the 1 ms deadlines cannot all be met
    # Streams over the cap are aborted server-side with RESOURCE_EXHAUSTED before any batch is
    # read; a Python aio client still writing its batches then often reports INTERNAL ("Internal
    # error from Core") instead: grpcio's aio client overwrites the server's status when a write
    # fails after it (grpc/grpc#36066). See docs/reliability.md.
    assert set(stream_codes) <= {"OK", "RESOURCE_EXHAUSTED", "INTERNAL"}, stream_codes
    assert stream_codes["OK"] >= 1
    assert sum(stream_codes.values()) == STREAMS
    # Bounded: at most a few batches per stream are in flight (servicer STREAM_BATCHES_IN_FLIGHT)
    # and streams beyond the cap are refused, so memory does not scale with the offered load.
    assert max(rss) < baseline + 400, rss


async def test_an_idle_stream_survives_keepalive_then_takes_a_burst(tmp_path: Path) -> None:
    """Client pings every 10 s (the server's floor), 25 s idle, then 20 batches at once."""
    idle = 25.0
    with spawn(tmp_path / "data", "--datafile", str(DATAFILE)) as process:
        options = [
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{process.port}", options=options
        ) as channel:
            stub = pb_grpc.TrackingServiceStub(channel)
            call = stub.TrackStream()

            def batch(sequence: int) -> pb.TrackStreamRequest:
                return pb.TrackStreamRequest(
                    sequence=sequence,
                    events=[
                        pb.TrackRequest(event_key="signup", user_id=f"k{sequence}-{i}")
                        for i in range(200)
                    ],
                )

            await call.write(batch(0))
            first = await call.read()
            await asyncio.sleep(idle)
            for sequence in range(1, 21):
                await call.write(batch(sequence))
            acks = [await call.read() for _ in range(20)]
            await call.done_writing()
            assert await call.code() == grpc.StatusCode.OK
        assert process.stop() == 0
    goaways = [x for x in process.log_lines() if "too_many_pings" in str(x).lower()]
    record(
        "keepalive_idle_burst",
        idle_seconds=idle,
        client_ping_interval_s=10,
        batches_acked_after_idle=len(acks),
        events_acked=first.accepted + sum(a.accepted for a in acks),
        stream_status="OK",
    )
    assert (first.code, first.accepted) == (0, 200)
    assert [(a.sequence, a.code, a.accepted) for a in acks] == [(s, 0, 200) for s in range(1, 21)]
    assert not goaways


async def test_concurrent_unary_calls_on_one_connection_are_queued_not_refused(
    tmp_path: Path,
) -> None:
    """800 concurrent Track calls from one client channel all succeed: an advertised HTTP/2
    stream cap once made gRPC refuse the excess with REFUSED_STREAM (UNAVAILABLE)."""
    with spawn(tmp_path / "data", "--datafile", str(DATAFILE)) as process:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{process.port}") as channel:
            await channel.channel_ready()
            stub = pb_grpc.TrackingServiceStub(channel)

            async def track(n: int) -> str:
                try:
                    await stub.Track(
                        pb.TrackRequest(event_key="signup", user_id=f"r{n}"), timeout=30
                    )
                except grpc.aio.AioRpcError as error:
                    return error.code().name
                return "OK"

            codes = collections.Counter(await asyncio.gather(*(track(n) for n in range(800))))
        assert process.popen.poll() is None
        assert process.stop() == 0
    record("one_connection_800_unary", outcomes=dict(codes))
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
