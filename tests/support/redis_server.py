"""A real `redis-server` (the Debian package) for tests: a free loopback port, a temp dir.

Missing binary: the test is skipped with a loud reason locally and fails under CI=true
(`.ci/run` installs redis-server, so there a skip would hide a broken install step).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install -y redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(f"SKIPPED LOUDLY: {message}")
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """One redis-server process; `stop()` and `start()` again keep the same port and dir."""

    directory: Path
    port: int = field(default_factory=free_port)
    persist: bool = False  # AOF on: a restart keeps the data
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        assert self.popen is None, "already running"
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.persist else "no",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        self.popen = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")
                self.popen = None
                raise RuntimeError(f"redis-server exited early:\n{log}")
            if self._answers():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not start listening")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.popen is None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
        self.popen = None


@contextlib.contextmanager
def redis_server(directory: Path, *, persist: bool = False) -> Iterator[RedisServer]:
    server = RedisServer(directory, persist=persist)
    server.start()
    try:
        yield server
    finally:
        server.stop()
