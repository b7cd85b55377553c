"""Optimizely Agent as a peer of bench/bench_agent.py: built from its public source archive,
fed by a local datafile server that also counts the events delivered to it, run as a process.

Nothing of Agent's code is in this repository. Its source archive (shared/bench/ on the
development machine; $TRACKD_AGENT_ARCHIVE elsewhere) is extracted and built into
build/agent/ once, then reused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.harness import ROOT, Server

ARCHIVE = Path(
    os.environ.get("TRACKD_AGENT_ARCHIVE", "/work/shared/bench/optimizely-agent-471fdcd.tar.gz")
)
BUILD = ROOT / "build" / "agent"

EVENTS_PATH = "/{target}/v1/events"
# What Agent logs when a queue of its is full and it drops what it was handed.
DROP_LINE = "MaxQueueSize has been met"


# --- building Agent ------------------------------------------------------------------------


def agent_binary(archive: Path, build: bool) -> tuple[Path | None, str]:
    """Agent's executable, built from `archive` into BUILD when not there yet and `build`;
    (None, why) when it cannot be had."""
    source = BUILD / archive.name.removesuffix(".tar.gz")
    binary = source / "optimizely"
    if binary.exists():
        return binary, ""
    if not build:
        return None, f"not built ({binary.relative_to(ROOT)} absent; a full run builds it)"
    if not archive.exists():
        return None, f"source archive {archive} absent"
    if shutil.which("go") is None:
        return None, "go not on PATH"
    print(f"building Optimizely Agent from {archive} into {source}", file=sys.stderr, flush=True)
    BUILD.mkdir(parents=True, exist_ok=True)
    # Extracted and built beside its final place, then renamed: an interrupted build leaves
    # no half-built tree that a later run would take for a finished one.
    staging = Path(tempfile.mkdtemp(prefix="building-", dir=BUILD))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        (top,) = [p for p in staging.iterdir() if p.is_dir()]
        steps = [
            # The generated statik package (its web UI's files) is not in the source.
            ["go", "run", "github.com/rakyll/statik", "-src=web/static", "-f"],
            ["go", "build", "-o", "optimizely", "./cmd/optimizely"],
        ]
        # The tree sits inside this repository's git checkout: no VCS stamp of that.
        env = {**os.environ, "GOFLAGS": f"{os.environ.get('GOFLAGS', '')} -buildvcs=false"}
        for step in steps:
            done = subprocess.run(
                step, cwd=top, env=env, capture_output=True, text=True, timeout=900, check=False
            )
            if done.returncode != 0:
                tail = " | ".join(done.stderr.strip().splitlines()[-3:])
                return None, f"`{' '.join(step)}` failed: {tail}"
        top.rename(source)
    except (OSError, tarfile.TarError, ValueError, subprocess.TimeoutExpired) as error:
        return None, f"build failed: {error}"
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return binary, ""


# --- the local datafile server and event receiver -----------------------------------------


class Peer(ThreadingHTTPServer):
    """Serves the datafile at /datafiles/<key>.json and counts the events POSTed to
    /<target>/v1/events, per target and user id prefix (the id up to its last `-`)."""

    daemon_threads = True

    def __init__(self, datafiles: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _PeerHandler)
        self.datafiles = datafiles  # by SDK key
        self.delivered: dict[str, Counter[str]] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def events_url(self, target: str) -> str:
        return self.url + EVENTS_PATH.format(target=target)

    def count(self, target: str, batch: Any) -> None:
        counts: Counter[str] = Counter()
        for visitor in batch.get("visitors", []):
            prefix = str(visitor.get("visitor_id", "")).rpartition("-")[0]
            counts[prefix] += sum(len(s.get("events", [])) for s in visitor.get("snapshots", []))
        with self.lock:
            self.delivered.setdefault(target, Counter()).update(counts)

    def total(self, target: str) -> int:
        with self.lock:
            return sum(self.delivered.get(target, Counter()).values())

    def delivered_for(self, target: str, prefix: str) -> int:
        with self.lock:
            return self.delivered.get(target, Counter())[prefix]


class _PeerHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Agent and trackd reuse their connections
    server: Peer

    def do_GET(self) -> None:
        key = self.path.removeprefix("/datafiles/").removesuffix(".json")
        datafile = self.server.datafiles.get(key)
        if datafile is None:
            self._answer(404)
        else:
            self._answer(200, datafile)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target, _, rest = self.path.lstrip("/").partition("/")
        if "/" + rest != EVENTS_PATH.partition("}")[2]:
            self._answer(404)
            return
        try:
            self.server.count(target, json.loads(body))
        except (ValueError, AttributeError):
            self._answer(400)
            return
        self._answer(204)  # what logx.optimizely.com answers

    def _answer(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would be the bench's whole output


@contextlib.contextmanager
def peer_server(datafiles: dict[str, bytes]) -> Iterator[Peer]:
    peer = Peer(datafiles)
    thread = threading.Thread(target=peer.serve_forever, name="peer", daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        peer.shutdown()
        peer.server_close()


# --- Agent as a process ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_agent(
    binary: Path, peer: Peer, workdir: Path, ready: Callable[[Server], bool], limit: float = 60.0
) -> Server:
    """Agent on loopback ports with its own config.yaml, pointed at `peer`; returns once
    `ready(server)` (Agent loads an SDK key's datafile on that key's first call, so the probe
    calls each key the benchmark uses)."""
    api, admin, webhook = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "OPTIMIZELY_CONFIG_FILENAME": str(binary.parent / "config.yaml"),
        "OPTIMIZELY_LOG_LEVEL": "warn",
        "OPTIMIZELY_LOG_PRETTY": "false",
        "OPTIMIZELY_API_PORT": str(api),
        "OPTIMIZELY_ADMIN_PORT": str(admin),
        "OPTIMIZELY_WEBHOOK_PORT": str(webhook),
        "OPTIMIZELY_CLIENT_DATAFILEURLTEMPLATE": peer.url + "/datafiles/%s.json",
        "OPTIMIZELY_CLIENT_EVENTURL": peer.events_url("agent"),
        "OPTIMIZELY_CLIENT_ODP_DISABLE": "true",
    }
    log_path = workdir / "agent.log"
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            [str(binary)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
    server = Server("agent", popen, api)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"agent exited early:\n{log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
            if ready(server):
                return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"agent did not get ready:\n{log_path.read_text()[-2000:]}")
