"""Where a unary call's server CPU goes, thread by thread: trackd, bare and bare+durable.

Each server is loaded in turn by ghz (unary Track or Activate, one connection, as
`bench_grpc.py` does), and each of its threads' CPU time (user + sys, from
/proc/PID/task/TID/stat) is read before and after; the threads are named by py-spy. Divided
by the calls answered, that is each thread's CPU per call: the event loop's share is what
the GIL serializes, the others (gRPC's poller, the outbox writer, delivery) run beside it.
This explains the unary ratio of `bench_grpc.py`; it is not in `make bench`.

    .venv/bin/python -m bench.bench_threads [--method Track] [--concurrency 64] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.harness import Server, start_bare, start_trackd, stat_cpu_seconds

PY_SPY = Path(sys.executable).with_name("py-spy")


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """(kernel name, CPU seconds user + sys) of each thread of `pid`, by OS thread id."""
    seconds: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            seconds[int(task.name)] = (comm, stat_cpu_seconds(task / "stat"))
        except OSError:
            continue  # the thread ended meanwhile
    return seconds


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by OS thread id (py-spy); empty when py-spy cannot attach."""
    done = subprocess.run(
        [str(PY_SPY), "dump", "--pid", str(pid), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return {}
    return {t["os_thread_id"]: t["thread_name"] for t in json.loads(done.stdout)}


def measure(server: Server, ghz: str, method: str, concurrency: int) -> dict[str, Any]:
    pid = server.popen.pid
    names = thread_names(pid)
    before = thread_cpu(pid)
    point = loadgen.ghz_unary(ghz, server, method, concurrency, 5.0, f"threads-{server.name}")
    after = thread_cpu(pid)
    names |= thread_names(pid)
    threads = []
    for tid, (comm, cpu) in after.items():
        used = cpu - before.get(tid, (comm, 0.0))[1]
        if used > 0:
            # Threads Python did not start (gRPC core's) keep their kernel name.
            name = names.get(tid, f"{comm} (native)")
            threads.append({"thread": name, "tid": tid, "us_per_call": 1e6 * used / point.ops})
    threads.sort(key=lambda t: -t["us_per_call"])
    return {
        "target": server.name,
        "calls_per_s": point.throughput,
        "us_per_call": sum(t["us_per_call"] for t in threads),
        "threads": threads,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=("Track", "Activate"), default="Track")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    ghz = loadgen.find_ghz()
    if ghz is None:
        raise SystemExit(
            f"ghz not found: go install github.com/bojand/ghz/cmd/ghz@{loadgen.GHZ_VERSION}"
        )
    reports: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        workdir = Path(tmp)
        servers = [
            start_trackd(workdir),
            start_bare(workdir),
            start_bare(workdir, durable=True),
        ]
        try:
            loadgen.activate_pool(servers, loadgen.POOL // 2)
            reports = [
                measure(server, ghz, options.method, options.concurrency) for server in servers
            ]
        finally:
            for server in servers:
                server.stop()
    if options.json:
        print(json.dumps(reports, indent=2))
    else:
        for report in reports:
            print(
                f"{report['target']}: {report['calls_per_s']:,.0f} {options.method}/s,"
                f" {report['us_per_call']:.0f} us CPU per call"
            )
            for thread in report["threads"]:
                if thread["us_per_call"] >= 1:
                    print(f"    {thread['us_per_call']:7.1f} us  {thread['thread']}")
    return reports


if __name__ == "__main__":
    main()
