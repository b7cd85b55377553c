"""`--outbox-sync full` against `normal`, side by side in one run: unary Track and a Decide of
50 flags for new users, calls/s and the daemon's CPU per call, with Track held against a bare
grpc.aio server's (issue 17's goals: at most 1.6x its CPU per call with full, 1.3x with
normal) and every CPU figure split by where it ran.

Two daemons per datafile, one per mode, started the same way (`harness.serve_command` with
`--outbox-sync MODE`), and for Track the bare servers of bench_grpc (`bare`, stock grpc.aio on
asyncio's loop, and `bare+uvloop`, on trackd's loop), measured in alternating rounds so that
whatever else the machine does falls on all; each figure is the median of the rounds.
  - Track: ghz (bench/loadgen.py `ghz_unary`, the same payload as bench_grpc: a pool of
    users, half activated, two tags) at each concurrency, for `--duration` seconds. Without
    ghz, the Python load generator of bench_grpc.
  - Decide: the tests' users of bench_decide (new ones each round), one Decide of every flag
    of bench/gen_datafile.py `build_flags(50)` per user from 4 client threads
    (bench_decide `_decide_pass`): its CPU includes delivering the pass's events.
CPU is the daemon's whole process tree (its encoder process too), read from /proc, and split
(`Server.cpu_split`) into the event loop's thread, the other threads (the outbox writer, the
WAL syncer, to_thread workers, gRPC's own) and the child processes (the event encoder).

    .venv/bin/python -m bench.bench_outbox_sync [--quick] [--json] [--rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from bench import bench_decide
from bench.gen_datafile import build_flags
from bench.harness import (
    DATAFILE,
    Server,
    machine,
    serve_command,
    settle,
    start_bare,
    start_server,
)
from bench.loadgen import activate_pool, find_ghz, ghz_unary, python_unary
from trackd.v1 import tracking_service_pb2 as pb

MODES = ("full", "normal")
BARE = ("bare", "bare+uvloop")
GOALS = {"full": 1.6, "normal": 1.3}  # issue 17: trackd/bare server CPU per unary call
SPLIT = ("loop", "threads", "children")


def start(workdir: Path, name: str, datafile: Path, mode: str) -> Server:
    data_dir = workdir / f"{name}-{mode}-data"
    data_dir.mkdir()
    command = serve_command(
        data_dir,
        datafile,
        "--outbox-sync",
        mode,
        "--log-level",
        "info",  # the harness waits for the `started` line
        # Room for every event of the run: the bench measures acceptance, not back-pressure.
        "--outbox-max-events",
        "100000000",
    )
    server = start_server(f"{name}-{mode}", command, workdir)
    if started_mode(workdir / f"{server.name}.log") != mode:  # a figure of the wrong mode
        server.stop()
        raise RuntimeError(f"{server.name}: its started line does not say outbox_sync {mode}")
    return server


def started_mode(log_path: Path) -> str | None:
    """The `outbox_sync` of a trackd log's `started` line."""
    for line in log_path.read_text(errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == "started":
                return str(entry.get("outbox_sync"))
    return None


def track_point(server: Server, concurrency: int, seconds: float, tag: str) -> dict[str, float]:
    ghz = find_ghz()
    before = server.cpu_split()
    if ghz is not None:
        point = ghz_unary(ghz, server, "Track", concurrency, seconds, tag)
    else:
        point = python_unary(server, "Track", concurrency, seconds, 2_000_000, tag, processes=2)
    return {
        "calls_per_s": point.throughput,
        "cpu_us_per_call": point.cpu_us_per_event,
        "p50_ms": point.p50_ms,
        "errors": point.errors,
        **split_per_call(before, server.cpu_split(), point.ops),
    }


def split_per_call(
    before: dict[str, float], after: dict[str, float], calls: int
) -> dict[str, float]:
    """`Server.cpu_split` between two readings, in us per call (keys `<part>_us`)."""
    return {f"{part}_us": (after[part] - before[part]) / max(calls, 1) * 1e6 for part in SPLIT}


def decide_requests(count: int, prefix: str) -> list[pb.DecideRequest]:
    return [
        json_format.ParseDict(
            {"user_id": f"{prefix}-{user_id}", "attributes": attributes}, pb.DecideRequest()
        )
        for user_id, attributes in bench_decide.users(count)
    ]


def decide_point(server: Server, requests: list[pb.DecideRequest]) -> dict[str, float]:
    figures = bench_decide.warmed_pass(server, requests)
    return {
        "calls_per_s": figures["calls_per_s"],
        "cpu_us_per_call": figures["daemon_cpu_us_per_user"],
        "impressions": figures["impressions"],
        **{f"{part}_us": figures[f"{part}_us"] for part in SPLIT},
    }


def medians(runs: list[dict[str, float]]) -> dict[str, Any]:
    """The median of each figure, and every round's calls/s and CPU per call beside it."""
    figures: dict[str, Any] = {
        key: round(statistics.median(run[key] for run in runs), 1) for key in runs[0]
    }
    for key in ("calls_per_s", "cpu_us_per_call"):
        figures[f"{key}_runs"] = [round(run[key], 1) for run in runs]
    return figures


def run(rounds: int, seconds: float, concurrencies: list[int], users: int) -> dict[str, Any]:
    run_id = f"s{os.getpid()}-{int(time.time())}"
    figures: dict[str, dict[str, list[dict[str, float]]]] = {}

    def note(scenario: str, mode: str, measured: dict[str, float]) -> None:
        figures.setdefault(scenario, {}).setdefault(mode, []).append(measured)

    with tempfile.TemporaryDirectory(prefix="bench-outbox-sync-") as scratch:
        workdir = Path(scratch)
        flags = workdir / "flags.json"
        flags.write_text(build_flags(bench_decide.FLAGS))
        servers: dict[tuple[str, str], Server] = {}
        try:
            for mode in MODES:
                servers["track", mode] = start(workdir, "track", DATAFILE, mode)
                servers["decide", mode] = start(workdir, "decide", flags, mode)
            for bare in BARE:
                servers["track", bare] = start_bare(
                    workdir, loop=bare.partition("+")[2] or "asyncio"
                )
            activate_pool([servers["track", mode] for mode in MODES], 500)
            for r in range(rounds):
                # Alternate which mode goes first, so neither always follows the other.
                order = MODES if r % 2 == 0 else MODES[::-1]
                for c in concurrencies:
                    for mode in (*order, *BARE):
                        server = servers["track", mode]
                        settle(server)
                        tag = f"{run_id}-{r}-{c}-{mode}"
                        note(f"Track, {c}", mode, track_point(server, c, seconds, tag))
                for mode in order:
                    requests = decide_requests(users, f"{run_id}-{r}-{mode}")
                    server = servers["decide", mode]
                    note("Decide 50 flags, new users", mode, decide_point(server, requests))
        finally:
            for server in servers.values():
                server.stop()
    return {
        "machine": machine(),
        "rounds": rounds,
        "track_seconds": seconds,
        "decide_users": users,
        "loadgen": "ghz" if find_ghz() else "python grpc.aio",
        "figures": {
            scenario: {mode: medians(runs) for mode, runs in by_mode.items()}
            for scenario, by_mode in figures.items()
        },
    }


def table(report: dict[str, Any]) -> list[str]:
    """Calls/s and CPU per call in each mode; for Track, each mode's CPU over each bare
    server's (the goal in brackets)."""
    lines = [
        "| call, concurrency | full calls/s | normal calls/s | full CPU us/call"
        " | normal CPU us/call | normal/full CPU | bare CPU us/call | bare+uvloop CPU us/call"
        f" | full/bare (<= {GOALS['full']}) | normal/bare (<= {GOALS['normal']})"
        " | full/bare+uvloop | normal/bare+uvloop |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario, by_mode in report["figures"].items():
        full, normal = by_mode["full"], by_mode["normal"]
        cells = [
            scenario,
            f"{full['calls_per_s']:,.0f}",
            f"{normal['calls_per_s']:,.0f}",
            f"{full['cpu_us_per_call']:,.0f}",
            f"{normal['cpu_us_per_call']:,.0f}",
            f"{normal['cpu_us_per_call'] / full['cpu_us_per_call']:.2f}",
        ]
        bares = [by_mode.get(bare) for bare in BARE]
        cells += [f"{bare['cpu_us_per_call']:,.0f}" if bare else "n/a" for bare in bares]
        cells += [
            f"{by_mode[mode]['cpu_us_per_call'] / bare['cpu_us_per_call']:.2f}" if bare else "n/a"
            for bare in bares
            for mode in MODES
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def split_table(report: dict[str, Any]) -> list[str]:
    """Where each server's CPU per call ran (medians of the rounds)."""
    lines = [
        "| call, concurrency | server | event loop thread us/call | other threads us/call"
        " | child processes us/call | total us/call |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for scenario, by_mode in report["figures"].items():
        for name, figures in by_mode.items():
            if not all(f"{part}_us" in figures for part in SPLIT):
                continue
            parts = [figures[f"{part}_us"] for part in SPLIT]
            server = f"trackd, {name}" if name in MODES else name
            lines.append(
                f"| {scenario} | {server} | "
                + " | ".join(f"{value:,.0f}" for value in parts)
                + f" | {sum(parts):,.0f} |"
            )
    return lines


def goal_ratios(report: dict[str, Any], bare: str) -> dict[str, list[float]]:
    """Per mode, trackd's Track CPU per call over `bare`'s, at each concurrency measured."""
    ratios: dict[str, list[float]] = {mode: [] for mode in MODES}
    for scenario, by_mode in report["figures"].items():
        theirs = by_mode.get(bare)
        if not scenario.startswith("Track") or not theirs or theirs["cpu_us_per_call"] <= 0:
            continue
        for mode in MODES:
            ratios[mode].append(by_mode[mode]["cpu_us_per_call"] / theirs["cpu_us_per_call"])
    return ratios


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default 3)")
    options = parser.parse_args(argv)
    if options.quick:
        report = run(options.rounds or 1, 0.5, [16], 20)
    else:
        report = run(options.rounds or 3, 5.0, [1, 16, 64], 1000)
    text = "\n".join([*table(report), "", *split_table(report)])
    print(json.dumps(report, indent=2) if options.json else text)
    return report


if __name__ == "__main__":
    main()
