"""Real trackd daemons for tests: in-process on 127.0.0.1:0, or as a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from trackd.config import Settings
from trackd.server import Running, running
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc


@dataclass
class Client:
    daemon: Running
    channel: grpc.aio.Channel
    stub: pb_grpc.TrackingServiceStub

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.daemon.port}"

    @property
    def http_url(self) -> str:
        """The --http-listen port's base URL (settings with `http_listen="127.0.0.1:0"`)."""
        assert self.daemon.http_port is not None, "start the daemon with http_listen"
        return f"http://127.0.0.1:{self.daemon.http_port}"


@contextlib.asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[Client]:
    async with running(settings) as daemon:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{daemon.port}")
        try:
            yield Client(daemon, channel, pb_grpc.TrackingServiceStub(channel))
        finally:
            await channel.close()


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "data_dir": data_dir,
        "log_format": "json",
        "event_flush_interval": 0.05,
        "grace_period": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Process:
    popen: subprocess.Popen[str]
    port: int
    log_path: Path
    http_port: int | None = None  # with --http-listen

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                lines.append(json.loads(line))
        return lines

    def started_workers(self, count: int, within: float = 30.0) -> list[dict[str, Any]]:
        """The `started` lines once `count` have been logged (`--workers`: spawn() waits for
        the first only), or as many as there are after `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            started = [line for line in self.log_lines() if line.get("event") == "started"]
            if len(started) >= count or time.monotonic() >= deadline:
                return started
            time.sleep(0.05)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        self.popen.send_signal(signum)
        return self.popen.wait(timeout=timeout)


def trackd_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "trackd", *args]


@contextlib.contextmanager
def spawn(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Process]:
    """Starts `trackd serve` on 127.0.0.1:0 and waits for its `started` log line."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"trackd-{time.monotonic_ns()}.log"
    full_env = {**os.environ, **(env or {})}
    with log_path.open("w") as log_file:
        popen = subprocess.Popen(
            trackd_command(
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                str(data_dir),
                "--log-format",
                "json",
                *args,
            ),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
            env=full_env,
        )
    process = Process(popen, 0, log_path)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            started = [line for line in process.log_lines() if line.get("event") == "started"]
            if started:
                process.port = int(started[0]["port"])
                if started[0].get("http_port") is not None:
                    process.http_port = int(started[0]["http_port"])
                break
            if popen.poll() is not None:
                raise RuntimeError(f"trackd exited early:\n{log_path.read_text()}")
            time.sleep(0.05)
        else:
            raise RuntimeError(f"trackd did not start:\n{log_path.read_text()}")
        yield process
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait(timeout=10)
