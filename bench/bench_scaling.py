"""Scaling: trackd with 1 vs 2 worker processes, with the host-local (LMDB) activation store
and with Redis.

Scenario 6 of issue 6, and item 5 of issue 17 (every core of one host without Redis). It
needs `trackd serve --workers N` (issue 8); the Redis rows also need a `redis-server` on
PATH. What is missing is said, never measured with made-up figures: without `--workers`
nothing runs; without redis-server only the Redis rows are left out, with a note.

For each store and worker count, `trackd serve --workers N` on a fixed loopback port (the
workers share it with SO_REUSEPORT) driven by ghz (or this repo's Python load generator)
with several connections, so that the kernel spreads them over the workers. The local store
(`--activation-store local`, in the data dir) is what `--workers N` uses by default; it is
named for one worker too, which would otherwise use its in-process store, so both rows
measure the same store. The Redis one is a redis-server on a free loopback port (no
persistence). Reported per point, as
in bench_grpc.py: throughput, p50/p99, CPU and peak RSS summed over trackd's process tree,
and redis-server's CPU beside it.

    .venv/bin/python -m bench.bench_scaling [--quick] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.harness import DATAFILE, Point, Server, serve_command, settle, trackd_command
from bench.loadgen import POOL, activate_pool, find_ghz, ghz_unary, python_unary

WORKERS = (1, 2)
CONNECTIONS = 4  # >= workers: SO_REUSEPORT balances connections, not requests
# The default store of --workers first: its rows are "scaling Activate", Redis's "..., Redis
# store".
STORES = ("local", "redis")
REDIS_SUFFIX = ", Redis store"


def availability() -> str | None:
    """None when the scenario can run, else why not."""
    missing = []
    done = subprocess.run(
        [*trackd_command(), "serve", "--help"], capture_output=True, text=True, check=False
    )
    flags = [f for f in ("--workers", "--activation-store") if f not in done.stdout]
    if flags:
        missing.append(f"`trackd serve` has no {'/'.join(flags)} (issue 8 not in this build)")
    return "; ".join(missing) or None


def redis_availability() -> str | None:
    """None when the Redis rows can run, else why not."""
    if shutil.which("redis-server") is None:
        return "redis-server not on PATH (apt-get install redis-server)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(workdir: Path) -> Server:
    port = free_port()
    log_path = workdir / "redis.log"
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return Server("redis", popen, port)
        if popen.poll() is not None:
            break
        time.sleep(0.05)
    popen.kill()
    raise RuntimeError(f"redis-server did not start:\n{log_path.read_text()}")


def start_workers(workdir: Path, workers: int, redis_port: int | None) -> Server:
    """`trackd serve --workers N` with the local store, or Redis at `redis_port`."""
    port = free_port()
    name = f"trackd x{workers}"
    store = "local" if redis_port is None else "redis"
    data_dir = workdir / f"data-{store}-{workers}"
    data_dir.mkdir()
    log_path = workdir / f"trackd-{store}-{workers}.log"
    url = "local" if redis_port is None else f"redis://127.0.0.1:{redis_port}/0"
    command = serve_command(
        data_dir,
        DATAFILE,
        "--workers",
        str(workers),
        "--activation-store",
        url,
        "--outbox-max-events",
        "100000000",
        listen=f"127.0.0.1:{port}",
    )
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(name, popen, port)
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if popen.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"{name} did not start:\n{log_path.read_text()}")
            with contextlib.suppress(grpc.RpcError):
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            time.sleep(0.1)
    # Every worker logs `started`; wait (10 s at most) until all of them have.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if text.count('"started"') >= workers:
            break
        time.sleep(0.1)
    return server


def measure(quick: bool, loadgen: str = "auto", stores: tuple[str, ...] = STORES) -> dict[str, Any]:
    reason = availability()
    if reason is not None:
        return {"scenario": "scaling", "available": False, "reason": reason, "points": []}
    ghz = find_ghz() if loadgen != "python" else None
    run_id = f"s{os.getpid()}-{int(time.time())}"
    points: list[Point] = []
    no_redis = redis_availability() if "redis" in stores else None
    stores = tuple(s for s in stores if s != "redis" or no_redis is None)
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        workdir = Path(tmp)
        for store in stores:
            points += measure_store(workdir, store, quick, ghz, run_id)
    base = {p.scenario: p for p in points if p.target == "trackd x1"}
    for p in points:
        one = base.get(p.scenario)
        if one is not None and one.throughput > 0:
            p.ratio = p.throughput / one.throughput  # vs 1 worker
    if no_redis is not None and points:
        points[0].notes.append(f"no Redis rows: {no_redis}")
    return {
        "scenario": "scaling",
        "available": True,
        "reason": None,
        "points": [asdict(p) for p in points],
    }


def measure_store(
    workdir: Path, store: str, quick: bool, ghz: str | None, run_id: str
) -> list[Point]:
    """1 then 2 workers with `store` (local, or redis: a redis-server of its own)."""
    duration = 0.5 if quick else 5.0
    concurrency = 16 if quick else 64
    points: list[Point] = []
    with contextlib.ExitStack() as stack:
        redis = None
        if store == "redis":
            redis = start_redis(workdir)
            stack.callback(redis.stop)
        for workers in WORKERS:
            server = start_workers(workdir, workers, redis.port if redis else None)
            try:
                activate_pool([server], 50 if quick else POOL // 2)
                for method in ("Activate", "Track"):
                    settle(server, 0.0 if quick else 30.0)
                    redis_cpu0 = redis.cpu_seconds() if redis else 0.0
                    t0 = time.perf_counter()
                    tag = f"{run_id}-{store}-{workers}-{method}"
                    if ghz is not None:
                        point = ghz_unary(
                            ghz, server, method, concurrency, duration, tag, CONNECTIONS
                        )
                    else:
                        point = python_unary(
                            server,
                            method,
                            concurrency,
                            duration,
                            200 if quick else 2_000_000,
                            tag,
                            processes=2,
                        )
                    point.scenario = f"scaling {method}" + (REDIS_SUFFIX if redis else "")
                    if redis is not None:
                        redis_pct = (
                            100 * (redis.cpu_seconds() - redis_cpu0) / (time.perf_counter() - t0)
                        )
                        point.notes.append(f"redis-server CPU {redis_pct:.0f}%")
                    points.append(point)
            finally:
                server.stop()
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--loadgen", choices=("auto", "ghz", "python"), default="auto")
    parser.add_argument(
        "--store", choices=STORES, action="append", help="only this store (repeatable)"
    )
    args = parser.parse_args(argv)
    report = measure(args.quick, args.loadgen, tuple(args.store or STORES))
    if args.json:
        print(json.dumps(report, indent=2))
    elif not report["available"]:
        print(f"not available in this build: {report['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
