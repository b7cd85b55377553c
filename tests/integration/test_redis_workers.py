"""`trackd serve --workers 2`: two processes on one port (SO_REUSEPORT) sharing a real Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import grpc
import pytest

from tests.integration.test_decisions_api import DATAFILE, attrs
from tests.support.daemon import spawn, trackd_command
from tests.support.redis_server import free_port, redis_server
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc


def test_workers_with_the_memory_store_are_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        trackd_command(
            "serve",
            *("--workers", "2", "--activation-store", "memory"),
            *("--listen", f"127.0.0.1:{free_port()}"),
        ),
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "TRACKD_DATA_DIR": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 2
    assert "--workers 2: needs a shared --activation-store" in done.stderr


@pytest.mark.slow
def test_two_workers_share_the_port_and_the_activations(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as redis:
        port = free_port()
        data_dir = tmp_path / "trackd"
        args = ("--listen", f"127.0.0.1:{port}", "--workers", "2", "--datafile", str(DATAFILE))
        with spawn(data_dir, *args, "--activation-store", redis.url) as process:
            started = process.started_workers(2)
            assert {line["port"] for line in started} == {port}
            assert {line["worker"] for line in started} == {0, 1}
            asyncio.run(exercise(port, users=40))
            assert process.stop(signal.SIGTERM) == 0
        # The kernel spread the connections: both workers recorded impressions.
        for index in (0, 1):
            events = (data_dir / f"worker-{index}" / "events.jsonl").read_text()
            assert "campaign_activated" in events, index


async def exercise(port: int, users: int) -> None:
    """Each user is activated over one new connection and tracked over another: whichever
    worker answers each, the conversion is attributed."""
    for i in range(users):
        user = f"user-{i}"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.TrackingServiceStub(channel)
            activated = await stub.Activate(
                pb.ActivateRequest(experiment_key="ab_running", user_id=user, attributes=attrs())
            )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.TrackingServiceStub(channel)
            tracked = await stub.Track(pb.TrackRequest(event_key="my_conversion", user_id=user))
        assert [a.variation_key for a in tracked.attributions] == [activated.variation_key]


def test_a_taken_port_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    # A plain listener, no SO_REUSEPORT: trackd cannot share its port.
    import socket

    with socket.socket() as taken, redis_server(tmp_path / "redis") as redis:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            trackd_command(
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--activation-store",
                redis.url,
                "--log-format",
                "json",
            ),
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "TRACKD_DATA_DIR": str(tmp_path / "data")},
            check=False,
        )
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"cannot listen on 127.0.0.1:{port}" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
