"""gRPC throughput of trackd against a bare grpc.aio server, side by side in one run.

Scenarios (issue 6, 1 and 2), each run against (a) trackd, (b) bench/bare_server.py and
(c) bare_server.py --durable (a commit before each answer and nothing else: what the
durability contract alone costs; not in --quick runs), (d) for unary calls bare_server.py
--loop uvloop (the loop trackd runs on by default; not in --quick runs), alternating
target by target at every point so that drift on this shared machine hits them all:

  unary   Activate and Track at concurrency 1, 16, 64. Load generator: ghz when it is
          installed (PATH, $GOPATH/bin or ~/go/bin), else bench/loadgen.py's worker
          processes (grpc.aio clients with pre-serialized requests, never in the server's
          process).
  stream  TrackStream at batch sizes 1, 50, 500, 5000: events acknowledged per second
          (durable SQLite commit on trackd), 4 streams in 2 producer processes with 2
          batches in flight per stream, pre-serialized batches.
  stream, one stream of new users
          TrackStream at 500 per batch from one stream in one process, a new user per
          event, every batch serialized before the clock starts and written as fast as flow
          control allows (issue 17 item 4: one producer's ceiling).

Reported per point: throughput, p50/p99 latency (per request, or per batch from write to
acknowledgement), the server's CPU (from /proc/<pid>/stat, all threads of the server and
its child processes: trackd's event encoder is one) and peak RSS (VmHWM summed over those
processes, reset before each point through /proc/<pid>/clear_refs when allowed), and the
ratio trackd/bare. No thresholds: it reports, it does not judge.

    .venv/bin/python -m bench.bench_grpc [--quick] [--json] [--profile] [--no-write]

Results are appended to bench/results/<YYYY-MM-DD>.md (never overwritten) unless --quick
or --no-write; --json prints them as JSON on stdout. --profile also samples trackd with
py-spy under TrackStream 500 (4 streams, and one stream of new users) and unary Track load
and adds the top frames, and the busy share of each thread, to the results.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.harness import (
    ROOT,
    Point,
    Server,
    machine,
    point_tables,
    profile_tables,
    settle,
    start_bare,
    start_trackd,
    with_ratios,
)
from bench.loadgen import (
    GHZ_VERSION,
    POOL,
    activate_pool,
    find_ghz,
    ghz_unary,
    new_users_stream,
    python_stream,
    python_unary,
)

RESULTS_DIR = ROOT / "bench" / "results"


# --- profiling -------------------------------------------------------------------------


def py_spy() -> str | None:
    found = Path(sys.executable).parent / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


def profile_under_load(
    server: Server, label: str, seconds: float, load: Any, workdir: Path
) -> dict[str, Any]:
    """Samples `server` with py-spy (native frames, every thread of it and of its child
    processes) from a second before `load()` starts until it ends: a load that prepares its
    requests first (one stream of new users) is still sampled whole, and the samples before
    it are idle ones, left out. `seconds` bounds the wait for py-spy to finish."""
    tool = py_spy()
    if tool is None:
        return {"label": label, "error": "py-spy not installed (pip install py-spy)"}
    raw = workdir / f"profile-{label.replace(' ', '-').replace(',', '')}.txt"
    command = [
        tool,
        "record",
        "--pid",
        str(server.pid),
        "--rate",
        "100",
        "--format",
        "raw",
        "--native",
        "--threads",
        "--subprocesses",
        "-o",
        str(raw),
    ]
    spy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)
    point = load()
    spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
    try:
        _, err = spy.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        spy.kill()
        _, err = spy.communicate()
    if not raw.exists():
        return {"label": label, "error": err.decode(errors="replace")[-500:]}
    return {"label": label, "load": asdict(point), **summarize_profile(raw.read_text())}


CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("disk sync wait (fsync/fdatasync)", ("fdatasync", "fsync (")),
    ("garbage collector", ("gc_collect",)),
    ("SQLite commit (outbox writer)", ("sqlite", "outbox/writer.py")),
    ("pickling / row encoding", ("pickle", "encode_rows", "_pickle")),
    ("Value conversion", ("values.py",)),
    ("stream event reading (trackd.rpc.wire)", ("wire.py",)),
    ("record building / uuid", ("records.py", "uuid", "tags.py")),
    ("attribution lookups", ("activation/", "tracking.py")),
    ("decision (bucketing, audiences)", ("decision/",)),
    ("dispatcher (payloads, file sink)", ("dispatcher.py", "payload.py", "sinks/", "json")),
    ("results counting", ("results.py",)),
    ("protobuf parse / serialize", ("upb", "protobuf", "message.c", "decode.c", "encode.c")),
    ("servicer translation", ("servicer.py",)),
    ("grpc aio / cygrpc / core", ("grpc", "cygrpc", "_cython", "aio", ".pyx", "libgrpc")),
    ("asyncio event loop", ("asyncio/", "selectors", "epoll")),
]


def _frame_key(frame: str) -> str:
    # "func (path/file.py:123)" -> "func (file.py)"; native frames have no line.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0] if where.rsplit(":", 1)[-1].isdigit() else where
    short = "/".join(Path(path).parts[-2:]) if path else ""
    return f"{name} ({short})" if short else name


def _category(stack: Sequence[str]) -> str:
    # The innermost frame that matches a category wins, so C time inside protobuf or
    # sqlite called from trackd code is counted as protobuf or sqlite.
    for frame in reversed(stack):
        low = frame.lower()
        for name, needles in CATEGORIES:
            if any(needle in low for needle in needles):
                return name
    return "other"


# A thread whose stack holds one of these is waiting (for work, the GIL or the network),
# not running: its samples are counted as idle and left out of the percentages.
WAITING = (
    "epoll_wait",
    "PyThread_acquire_lock_timed",
    "take_gil",
    "pthread_cond_wait",
    "pthread_cond_timedwait",
    "sem_wait",
    "sem_timedwait",
    "nanosleep",
    "poll (libc",
    "select (libc",
)


def _pid_of(process_frame: str) -> str:
    # 'process 123:"command line"'
    return process_frame.removeprefix("process ").partition(":")[0]


def _thread_of(frames: list[str], root_pid: str) -> tuple[str, list[str]]:
    """The thread a py-spy stack (recorded with --threads and --subprocesses) ran on, named
    as its process and thread ("trackd MainThread", "child process MainThread"), and the
    stack without those two frames."""
    process = thread = ""
    while frames and (frames[0].startswith("process ") or frames[0].startswith("thread (")):
        head = frames.pop(0)
        while head.count('"') % 2 and frames:  # a command line holding ";" (the encoder's)
            head += ";" + frames.pop(0)
        if head.startswith("process "):
            process = "trackd" if _pid_of(head) == root_pid else "child"
        else:
            thread = head.partition("): ")[2] or head
    return (f"{process or 'trackd'} {thread}".strip(), frames)


def summarize_profile(text: str) -> dict[str, Any]:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    categories: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = idle = 0
    lines = text.splitlines()
    first = lines[0] if lines else ""
    root_pid = _pid_of(first.split(";", 1)[0]) if first.startswith("process ") else ""
    for line in lines:
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        thread, frames = _thread_of([f for f in stack_text.split(";") if f], root_pid)
        if not frames:
            continue
        if any(marker in stack_text for marker in WAITING):
            idle += count
            continue
        total += count
        threads[thread] += count
        keys = [_frame_key(f) for f in frames]
        own[keys[-1]] += count
        for key in set(keys):
            inclusive[key] += count
        categories[_category(frames)] += count
    if total == 0:
        return {
            "samples": 0,
            "idle": idle,
            "self": [],
            "inclusive": [],
            "categories": [],
            "threads": [],
        }

    def top(counter: collections.Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(n)]

    return {
        "samples": total,
        "idle": idle,
        "self": top(own, 20),
        "inclusive": top(inclusive, 25),
        "categories": top(categories, len(CATEGORIES) + 1),
        "threads": top(threads, 8),
    }


def markdown(
    points: list[Point],
    info: dict[str, str],
    profiles: list[dict[str, Any]],
    args: argparse.Namespace,
) -> str:
    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
    lines = [
        f"## gRPC: trackd vs bare grpc.aio ({now})",
        "",
        "`bench/bench_grpc.py` — trackd (durable SQLite outbox, file event sink, default"
        " settings but a 100M-event outbox cap) and `bench/bare_server.py` (same stubs and"
        " channel options, canned answers; and `--durable`, a commit before each answer)"
        " run side by side, point by point, in one run."
        " Both servers and the load generators share this machine: figures are noisy,"
        " ratios are the result.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
    ]
    if args.variant:
        lines += [
            f"`trackd+{args.variant}` is trackd started through `bench/trackd_variant.py"
            f" {args.variant}`: an experiment measured beside the shipped daemon, not trackd"
            " as shipped.",
            "",
        ]
    lines += point_tables(points, "###")
    lines += profile_tables(profiles, "###")
    lines.append(f"Command: `bench/bench_grpc.py {' '.join(args.argv)}`".rstrip() + "")
    lines.append("")
    return "\n".join(lines)


def append_results(text: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{dt.date.today().isoformat()}.md"
    new = not path.exists()
    with path.open("a") as out:
        if new:
            out.write(f"# Benchmark results, {dt.date.today().isoformat()}\n\n")
        out.write(text + "\n")
    return path


# --- main ------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--no-write", action="store_true", help="do not append to bench/results")
    parser.add_argument("--profile", action="store_true", help="py-spy trackd under load")
    parser.add_argument("--loadgen", choices=("auto", "ghz", "python"), default="auto")
    parser.add_argument("--only", choices=("unary", "stream"), default=None)
    parser.add_argument("--duration", type=float, default=None, help="seconds per point")
    parser.add_argument("--concurrency", type=int, nargs="+", default=None)
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--window", type=int, default=2, help="batches in flight per stream")
    parser.add_argument(
        "--variant",
        default="",
        help="also run trackd with these knobs (see bench/trackd_variant.py), e.g. sync-normal",
    )
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    duration = args.duration or (0.5 if quick else 5.0)
    stream_duration = args.duration or (0.5 if quick else 6.0)
    concurrencies = args.concurrency or ([1, 16] if quick else [1, 16, 64])
    batches = args.batches or ([1, 500] if quick else [1, 50, 500, 5000])
    max_requests = 200 if quick else 2_000_000
    max_events = 2_000 if quick else 5_000_000
    # Every event of the one stream of new users is serialized first: room for 500k events/s.
    new_user_events = 2_000 if quick else int(stream_duration * 500_000)
    ghz = find_ghz() if args.loadgen != "python" else None
    if args.loadgen == "ghz" and ghz is None:
        raise SystemExit(f"ghz not found: go install github.com/bojand/ghz/cmd/ghz@{GHZ_VERSION}")
    run_id = f"r{os.getpid()}-{int(time.time())}"
    settle_limit = 0.0 if quick else 90.0
    points: list[Point] = []
    profiles: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-grpc-") as tmp:
        workdir = Path(tmp)
        servers = [start_trackd(workdir)]
        if args.variant:
            servers.append(start_trackd(workdir, args.variant))
        servers.append(start_bare(workdir))
        if not quick:
            servers.append(start_bare(workdir, durable=True))
            # trackd runs on uvloop (--event-loop auto): the same loop under the bare server
            # tells the loop's share from trackd's own (unary only: the stream points are
            # bound by trackd's own work).
            servers.append(start_bare(workdir, loop="uvloop"))
        try:
            activate_pool(servers, 50 if quick else POOL // 2)

            def unary(server: Server, method: str, c: int, seconds: float) -> Point:
                tag = f"{run_id}-{method}-{c}-{server.name}"
                if ghz is not None:
                    return ghz_unary(ghz, server, method, c, seconds, tag)
                return python_unary(server, method, c, seconds, max_requests, tag, processes=2)

            def stream(server: Server, batch: int, seconds: float) -> Point:
                return python_stream(
                    server, batch, args.streams, args.window, seconds, max_events, processes=2
                )

            if args.only in (None, "unary"):
                for method in ("Activate", "Track"):
                    for c in concurrencies:
                        for server in servers:
                            settle(server, settle_limit)
                            points.append(unary(server, method, c, duration))
                            _progress(points[-1], args)
            streamed = [server for server in servers if server.name != "bare+uvloop"]
            if args.only in (None, "stream"):
                for batch in batches:
                    for server in streamed:
                        settle(server, settle_limit)
                        points.append(stream(server, batch, stream_duration))
                        _progress(points[-1], args)
                for server in streamed:
                    settle(server, settle_limit)
                    points.append(
                        new_users_stream(
                            server, 500, stream_duration, new_user_events, f"{run_id}-new"
                        )
                    )
                    _progress(points[-1], args)
            if args.profile:
                trackd = servers[0]
                seconds = 3 if quick else 10
                settle(trackd, settle_limit)
                profiles.append(
                    profile_under_load(
                        trackd,
                        "TrackStream, batches of 500",
                        seconds,
                        lambda: stream(trackd, 500, seconds - 1.5),
                        workdir,
                    )
                )
                settle(trackd, settle_limit)
                profiles.append(
                    profile_under_load(
                        trackd,
                        "one stream of new users, batches of 500",
                        seconds + 60,  # its batches are serialized first, not sampled
                        lambda: new_users_stream(
                            trackd, 500, seconds - 1.5, new_user_events, f"{run_id}-profile"
                        ),
                        workdir,
                    )
                )
                settle(trackd, settle_limit)
                profiles.append(
                    profile_under_load(
                        trackd,
                        "unary Track, concurrency 16",
                        seconds,
                        lambda: unary(trackd, "Track", 16, seconds - 1.5),
                        workdir,
                    )
                )
        finally:
            for server in servers:
                server.stop()
    with_ratios(points)
    return {"machine": machine(), "points": [asdict(p) for p in points], "profiles": profiles}


def _progress(point: Point, args: argparse.Namespace) -> None:
    if not args.quick:
        label = f"{point.scenario} c={point.concurrency}" + (
            f" batch={point.batch}" if point.batch else ""
        )
        print(
            f"{label:32} {point.target:6} {point.throughput:12,.0f}/s  p50 {point.p50_ms:7.2f} ms"
            f"  p99 {point.p99_ms:7.2f} ms  cpu {point.cpu_pct:4.0f}%  errors {point.errors}",
            file=sys.stderr,
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    result = run(args)
    points = [Point(**p) for p in result["points"]]
    if args.json:
        print(json.dumps(result, indent=2))
    if not (args.quick or args.no_write):
        text = markdown(points, result["machine"], result["profiles"], args)
        path = append_results(text)
        if not args.json:
            print(text)
        print(f"appended to {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
