"""Every benchmark of issue 6 in one run: one dated results section and one plot.

    .venv/bin/python -m bench.run_all            # full (minutes): what `make bench` runs
    .venv/bin/python -m bench.run_all --quick    # tiny counts, seconds: the smoke run

Every benchmark is a module of the `bench` package, run from the repository root with `-m`
(shared pieces in bench/harness.py and bench/loadgen.py). Scenarios, each a module of its
own run here as a subprocess with --json:
  1. unary Activate/Track, trackd vs a bare grpc.aio server   bench_grpc.py (--profile)
  2. TrackStream events/s by batch size, trackd vs bare,      bench_grpc.py
     and one stream of new users
  3. in-process decisions, trackd vs optimizely-sdk           bench_decisions.py
  4. activation cache: memory per entry, latency under expiry bench_activation_cache.py
  5. start-up time and memory with 1 MB / 10 MB datafiles     bench_startup.py
  6. 1 vs 2 worker processes, local and Redis stores          bench_scaling.py
  7. delivery of a backlog, one batch vs rounds of batches    bench_delivery.py
  8. in-process Decide of a 50-flag datafile, trackd vs SDK   bench_decide.py
  9. Optimizely Agent vs trackd: Activate, Track, Decide      bench_agent.py
 10. Activate/Track/Decide over gRPC, Connect JSON, Agent /v1 bench_http.py
 11. --outbox-sync full vs normal: Track and Decide            bench_outbox_sync.py
 12. Decide with its events delivered: SDK in-process vs daemon bench_decide_delivered.py

The full run appends one section to bench/results/<YYYY-MM-DD>.md (never overwrites) and
saves bench/results/<YYYY-MM-DD>-<HHMMSS>.png, referenced from it. --quick writes nothing
unless --results-dir is given. No thresholds: goals are reported as met or not, and a
failed scenario is reported as failed (exit status 1) without stopping the others.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import (
    bench_agent,
    bench_decide,
    bench_decide_delivered,
    bench_http,
    bench_outbox_sync,
)
from bench.harness import Point, append_results, machine, point_tables, profile_tables
from bench.loadgen import NEW_USERS_STREAM

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

SCENARIOS = (
    "grpc",
    "decisions",
    "activation",
    "startup",
    "scaling",
    "delivery",
    "decide",
    "agent",
    "http",
    "outbox_sync",
    "decide_delivered",
)
GOALS = {
    "unary_ratio": 0.8,  # trackd/bare throughput
    "stream_500": 150_000,  # events/s acknowledged at 500 per batch
    "stream_new_users": 300_000,  # events/s acknowledged, one stream of new users (issue 17)
    "decisions": 5.0,  # SDK get_variation time / trackd decide time
    "decide_us_per_flag": 3.0,  # trackd in-process decide_all CPU per flag
    "decide_rpc_over_sdk": 10.0,  # SDK decide_all CPU per user / the daemon's, per Decide pass
    "unary_cpu_over_bare": 1.6,  # trackd/bare server CPU per unary call, --outbox-sync full
}


def command(scenario: str, quick: bool) -> list[str]:
    flag = ["--quick"] if quick else []
    py = [sys.executable, "-m"]  # run from ROOT, like this module: `bench` is a package there
    return {
        "grpc": [*py, "bench.bench_grpc", "--json", "--no-write", *flag]
        + ([] if quick else ["--profile"]),
        "decisions": [*py, "bench.bench_decisions", "--json", *flag],
        "activation": [*py, "bench.bench_activation_cache", *flag],
        "startup": [*py, "bench.bench_startup", "--json", *flag],
        "scaling": [*py, "bench.bench_scaling", "--json", *flag],
        "delivery": [*py, "bench.bench_delivery", "--json", *flag],
        "decide": [*py, "bench.bench_decide", "--json", "--no-write", *flag],
        "agent": [*py, "bench.bench_agent", "--json", "--no-write", *flag],
        "http": [*py, "bench.bench_http", "--json", "--no-write", *flag],
        "outbox_sync": [*py, "bench.bench_outbox_sync", "--json", *flag],
        "decide_delivered": [*py, "bench.bench_decide_delivered", "--json", *flag],
    }[scenario]


def run_scenario(scenario: str, quick: bool) -> dict[str, Any]:
    """The scenario's JSON report, plus its wall time; {"error": ...} when it failed."""
    argv = command(scenario, quick)
    print(f"== {scenario}: {' '.join(Path(a).name for a in argv[1:])}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        done = subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=None,  # progress lines go straight to the terminal
            text=True,
            timeout=300 if quick else 1800,
            cwd=ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": "timed out", "wall_s": time.perf_counter() - started}
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"error": f"exit status {done.returncode}", "wall_s": wall}
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError as error:
        return {"error": f"not JSON: {error}: {done.stdout[-300:]!r}", "wall_s": wall}
    report["wall_s"] = wall
    return report


# --- headline ----------------------------------------------------------------------------


def grpc_points(reports: dict[str, Any]) -> list[Point]:
    return [Point(**p) for p in reports.get("grpc", {}).get("points", [])]


def headline(reports: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, measured, goal, met) rows."""
    rows: list[tuple[str, str, str, str]] = []
    points = grpc_points(reports)
    for method in ("Activate", "Track"):
        ratios = [
            p.ratio
            for p in points
            if p.scenario == f"unary {method}" and p.target == "trackd" and p.ratio is not None
        ]
        if ratios:
            rows.append(
                (
                    f"unary {method}: trackd/bare throughput (c=1..64)",
                    f"{min(ratios):.2f} .. {max(ratios):.2f}",
                    f">= {GOALS['unary_ratio']}",
                    _met(min(ratios) >= GOALS["unary_ratio"]),
                )
            )
    rows += unary_cpu_rows(points)
    stream = [p for p in points if p.scenario == "stream" and p.target == "trackd"]
    at_500 = [p for p in stream if p.batch == 500]
    if at_500:
        rows.append(
            (
                "TrackStream, 500/batch: events/s acknowledged (durable)",
                f"{at_500[0].throughput:,.0f}",
                f">= {GOALS['stream_500']:,}",
                _met(at_500[0].throughput >= GOALS["stream_500"]),
            )
        )
    one_stream = [p for p in points if p.scenario == NEW_USERS_STREAM and p.target == "trackd"]
    if one_stream:
        rows.append(
            (
                "TrackStream, one stream of new users, 500/batch: events/s acknowledged",
                f"{one_stream[0].throughput:,.0f}",
                f">= {GOALS['stream_new_users']:,}",
                _met(one_stream[0].throughput >= GOALS["stream_new_users"]),
            )
        )
    decisions = reports.get("decisions", {})
    if "sdk_over_trackd" in decisions:
        faster = decisions["sdk_over_trackd"]["get_variation"]
        rows.append(
            (
                "decisions: SDK get_variation time / trackd decide time",
                f"{faster:.1f}x",
                f">= {GOALS['decisions']:.0f}x",
                _met(faster >= GOALS["decisions"]),
            )
        )
    decide = reports.get("decide", {})
    if "trackd" in decide:
        per_flag = decide["trackd"]["cpu_us_per_flag"]
        rows += [
            (
                f"Decide in-process, {decide['flags']} flags: trackd CPU per flag",
                f"{per_flag:.2f} us",
                f"<= {GOALS['decide_us_per_flag']:.0f} us",
                _met(per_flag <= GOALS["decide_us_per_flag"]),
            ),
            (
                "Decide in-process: SDK decide_all CPU per user / trackd's",
                f"{decide['sdk_over_trackd_cpu']:.1f}x",
                "(the >= 10x goal is for the Decide RPC)",
                "",
            ),
            *(
                (
                    f"Decide RPC, {pass_name}: SDK decide_all CPU per user / daemon's",
                    f"{ratio:.1f}x",
                    f">= {GOALS['decide_rpc_over_sdk']:.0f}x",
                    _met(ratio >= GOALS["decide_rpc_over_sdk"]),
                )
                for pass_name, ratio in decide.get("sdk_over_daemon_cpu", {}).items()
            ),
            (
                "Decide in-process: disagreements with the SDK",
                f"{decide['disagreements']} of {decide['compared']:,}",
                "0",
                _met(decide["disagreements"] == 0),
            ),
        ]
    rows += outbox_sync_rows(reports.get("outbox_sync", {}))
    rows += decide_delivered_rows(reports.get("decide_delivered", {}))
    rows += agent_rows(reports.get("agent", {}))
    rows += http_rows(reports.get("http", {}))
    startup = reports.get("startup", {})
    rows.extend(
        (
            f"start-up with a {row['datafile']} datafile: to first Activate / peak RSS",
            f"{row['first_activate_s']:.2f} s / {row['peak_rss_mb']:.0f} MB",
            "(no goal)",
            "",
        )
        for row in startup.get("rows", [])[1:]
    )
    scaling = reports.get("scaling", {})
    if scaling.get("available"):
        two = [
            p
            for p in (Point(**q) for q in scaling["points"])
            if p.target == "trackd x2" and p.scenario == "scaling Activate"
        ]
        if two and two[0].ratio is not None:
            rows.append(
                ("Activate, local store: 2 workers / 1 worker", f"{two[0].ratio:.2f}x", "", "")
            )
    elif scaling:
        rows.append(("1 vs 2 workers", "not available in this build", "", ""))
    return rows


def unary_cpu_rows(points: list[Point]) -> list[tuple[str, str, str, str]]:
    """trackd's server CPU per unary call over the bare server's (issue 17 item 3), against
    the stock bare server and, when measured, the bare server on trackd's uvloop."""
    rows = []
    for method in ("Activate", "Track"):
        scenario = f"unary {method}"
        trackd = {
            p.concurrency: p for p in points if p.scenario == scenario and p.target == "trackd"
        }
        for bare_name in ("bare", "bare+uvloop"):
            ratios = [
                trackd[p.concurrency].cpu_us_per_event / p.cpu_us_per_event
                for p in points
                if p.scenario == scenario
                and p.target == bare_name
                and p.concurrency in trackd
                and p.cpu_us_per_event > 0
            ]
            if ratios:
                goal = GOALS["unary_cpu_over_bare"]
                rows.append(
                    (
                        f"unary {method}: trackd/{bare_name} server CPU per call (c=1..64)",
                        f"{min(ratios):.2f} .. {max(ratios):.2f}",
                        f"<= {goal} (--outbox-sync full)",
                        _met(max(ratios) <= goal),
                    )
                )
    return rows


def outbox_sync_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Issue 17 item 3's goal per durability mode: trackd's CPU per unary Track over each
    bare server's, measured beside both modes in section 11."""
    if "figures" not in report:
        return []
    rows = []
    for bare in bench_outbox_sync.BARE:
        for mode, ratios in bench_outbox_sync.goal_ratios(report, bare).items():
            if ratios:
                goal = bench_outbox_sync.GOALS[mode]
                rows.append(
                    (
                        f"unary Track, --outbox-sync {mode}: trackd/{bare} server CPU per call"
                        " (section 11, c=1..64)",
                        f"{min(ratios):.2f} .. {max(ratios):.2f}",
                        f"<= {goal}",
                        _met(max(ratios) <= goal),
                    )
                )
    return rows


def decide_delivered_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Each SDK configuration's CPU per user over the daemon's, events delivered on both
    sides: context for the Decide goal, which section 8 holds without the SDK's sending."""
    return [
        (
            f"Decide, events delivered over HTTP on both sides: SDK ({name} processor)"
            " CPU per user / daemon's",
            f"{figures['over_daemon']:.1f}x",
            "(no goal: section 12; the >= 10x goal is section 8's)",
            "",
        )
        for name, figures in report.get("passes", {}).items()
        if name in bench_decide_delivered.PROCESSORS
    ]


def agent_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """trackd's server CPU per call over Agent's, per call: the table to beat (issue 17)."""
    if not report.get("agent", {}).get("available"):
        return []
    points = [Point(**p) for p in report["points"]]
    agent = {(p.scenario, p.concurrency): p for p in points if p.target == "agent"}
    rows = []
    for scenario in dict.fromkeys(p.scenario for p in points):
        pairs = [
            (p.concurrency, p.cpu_us_per_event / theirs.cpu_us_per_event)
            for p in points
            if p.scenario == scenario
            and p.target == "trackd"
            and (theirs := agent.get((scenario, p.concurrency))) is not None
            and theirs.cpu_us_per_event > 0
        ]
        if pairs:
            ratios = [ratio for _, ratio in pairs]
            rows.append(
                (
                    f"{scenario}: trackd server CPU per call / Optimizely Agent's"
                    f" (c={min(c for c, _ in pairs)}..{max(c for c, _ in pairs)})",
                    f"{min(ratios):.1f}x .. {max(ratios):.1f}x",
                    "(the table to beat: section 9)",
                    "",
                )
            )
    return rows


def http_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Each HTTP front end's server CPU per call (until idle) over gRPC's (issue 16, Speed)."""
    if not report.get("available"):
        return []
    rows = []
    for (scenario, protocol), pairs in bench_http.cpu_over_grpc(report).items():
        ratios = [ratio for _, ratio in pairs]
        rows.append(
            (
                f"{scenario.removeprefix('unary ')} over {protocol}: server CPU per call until"
                f" idle / gRPC's (c={pairs[0][0]}..{pairs[-1][0]})",
                f"{min(ratios):.2f}x .. {max(ratios):.2f}x",
                "(no goal: section 10)",
                "",
            )
        )
    return rows


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


# --- markdown ----------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    align = align or "|---" * len(header) + "|"
    return [
        "| " + " | ".join(header) + " |",
        align,
        *["| " + " | ".join(row) + " |" for row in rows],
        "",
    ]


def _failed(report: dict[str, Any]) -> list[str]:
    return [f"**Failed**: {report['error']} (after {report['wall_s']:.0f} s).", ""]


def section_grpc(report: dict[str, Any]) -> list[str]:
    lines = [
        "### 1-2. gRPC: unary Activate/Track and TrackStream, trackd vs bare grpc.aio",
        "",
    ]
    if "error" in report:
        return lines + _failed(report)
    lines += [
        "`bench/bench_grpc.py`: trackd (durable SQLite outbox, file event sink, default"
        " settings but a 100M-event outbox cap) and `bench/bare_server.py` (same stubs and"
        " channel options, canned answers, TrackStream batches parsed) side by side, point by"
        " point, with `bare+durable` (`bare_server.py --durable`: the same, but each request or"
        " batch is committed to SQLite by one group-committing writer thread before the answer,"
        " as trackd's outbox does, and nothing else: the cost of the durability contract"
        " alone). Ratios are against `bare`. Server CPU and peak RSS cover the server's process"
        " tree (all threads, and trackd's spawned event-encoder process; peak RSS sums each"
        " process's peak); the load generator runs in other processes on the same cores."
        " Duration is per point.",
        "",
    ]
    lines += point_tables([Point(**p) for p in report["points"]], "####")
    lines += profile_tables(report.get("profiles", []), "####")
    return lines


def section_decisions(report: dict[str, Any]) -> list[str]:
    lines = ["### 3. In-process decisions: trackd decide() vs optimizely-sdk", ""]
    if "error" in report:
        return lines + _failed(report)
    us = report["us_per_decision"]
    per_s = report["decisions_per_s"]
    latency = report["latency_us"]
    calls = report["decisions_per_run"] * report["repeats"]
    rows = []
    for key, label in (
        ("trackd_decide", "trackd `decide()`"),
        ("sdk_get_variation", "SDK `get_variation()` (no event)"),
        ("sdk_activate", "SDK `activate()` (impression, no-op dispatcher)"),
    ):
        rows.append(
            [
                label,
                f"{per_s[key]:,}",
                f"{us[key]:.3f}",
                f"{latency[key]['p50']:.3f}",
                f"{latency[key]['p99']:.3f}",
                f"{calls * us[key] / 1e6:.2f}",
                f"{us[key] / us['trackd_decide']:.1f}x",
            ]
        )
    lines += [
        f"`bench/bench_decisions.py`. Load generator: a loop in one process, concurrency 1"
        f" (one thread). Payload: {report['datafile']}, {report['users']} users with 1-2"
        f" attributes, every (user, running experiment) pair, same answers checked first;"
        f" {report['decisions_per_run']:,} decisions per run, median of {report['repeats']}"
        " runs; p50/p99 from timing each call alone. Process CPU"
        f" {report['cpu_pct']}%, peak RSS {report['peak_rss_mb']:.0f} MB (SDK and trackd in"
        " the same process).",
        "",
    ]
    lines += _table(
        [
            "engine",
            "decisions/s",
            "us/decision (median run)",
            "p50 us",
            "p99 us",
            "duration s",
            "time vs trackd",
        ],
        rows,
        "|---|---:|---:|---:|---:|---:|---:|",
    )
    load = report["us_per_datafile_load"]
    lines += [
        f"Loading that datafile: trackd `parse_datafile` {load['trackd_parse_datafile']:,.0f} us,"
        f" SDK constructor {load['sdk_constructor']:,.0f} us.",
        "",
    ]
    return lines


def section_activation(report: dict[str, Any]) -> list[str]:
    lines = ["### 4. Activation cache: memory per entry, latency while entries expire", ""]
    if "error" in report:
        return lines + _failed(report)
    sizes = report["sizes"]
    lines += [
        "`bench/bench_activation_cache.py`: the in-memory store (`MemoryActivationStore`)"
        " called directly, no gRPC. Load generator: a loop in one process, concurrency 1."
        f" Payload: {sizes[0]:,} and {sizes[-1]:,} (user, experiment) entries, 4 experiments"
        " per user, short (`user-N`) or UUID user ids. Memory per entry: a fresh subprocess"
        " per size, tracemalloc (exact) and RSS delta, beside a naive OrderedDict layout."
        f" Process CPU {report['cpu_pct']}% over the latency parts, peak RSS"
        f" {report['peak_rss_mb']:.0f} MB (the store at {sizes[-1]:,} entries).",
        "",
    ]
    memory_rows = []
    for key, row in report["bytes_per_entry"].items():
        n, shape = key.split("_", 1)
        memory_rows.append(
            [
                f"{int(n):,}",
                shape.removesuffix("_user_ids"),
                f"{row['store_tracemalloc']:.0f}",
                f"{row['store_rss']:.0f}",
                f"{row['naive_tracemalloc']:.0f}",
                f"{row['naive_rss']:.0f}",
                f"{row['store_rss'] * int(n) / (1 << 20):.0f}",
            ]
        )
    lines += _table(
        [
            "entries",
            "user ids",
            "store B/entry (tracemalloc)",
            "store B/entry (RSS)",
            "naive B/entry (tracemalloc)",
            "naive B/entry (RSS)",
            "store MB (RSS)",
        ],
        memory_rows,
        "|---:|---|---:|---:|---:|---:|---:|",
    )
    ops = report["ns_per_op_at_max"]
    lines += [
        f"Operation cost at {sizes[-1]:,} entries ({report['ops']:,} calls each, mean):",
        "",
    ]
    lines += _table(
        ["operation", "ns/op", "ops/s"],
        [[name, f"{ns:,}", f"{1e9 / max(ns, 1):,.0f}"] for name, ns in ops.items()],
        "|---|---:|---:|",
    )
    expiry = report["expiry_at_max"]
    both = expiry["get_put_while_all_expire"]
    purge = expiry["purge_expired_all"]
    retain = expiry["retain_dropping_half"]
    growth = report["put_latency_growing_then_churning_at_max"]
    lines += [
        f"While all {sizes[-1]:,} entries expire at once (the path Activate/Track take):",
        "",
    ]
    lines += _table(
        ["what", "p50 us", "p99 us", "max us", "notes"],
        [
            [
                "get/put, calls reclaiming expired entries",
                f"{both['p50_us']}",
                f"{both['p99_us']}",
                f"{both['max_us']}",
                f"{both['ops']:,} calls reclaimed {both['expired_reclaimed_by_those_ops']:,}",
            ],
            [
                "put while growing then churning, default shards",
                f"{growth['default_shards']['p50_us']}",
                f"{growth['default_shards']['p99_us']}",
                f"{growth['default_shards']['max_us']}",
                f"{growth['default_shards']['shards']} shards (1 shard: max"
                f" {growth['one_shard']['max_us']} us)",
            ],
            [
                "background purge_expired of all",
                "",
                "",
                "",
                f"{purge['seconds']} s, longest event-loop stall {purge['max_loop_stall_ms']} ms",
            ],
            [
                "datafile change dropping half (retain)",
                "",
                "",
                "",
                f"{retain['seconds']} s, longest event-loop stall {retain['max_loop_stall_ms']} ms",
            ],
        ],
        "|---|---:|---:|---:|---|",
    )
    return lines


def section_startup(report: dict[str, Any]) -> list[str]:
    lines = ["### 5. Start-up time and memory, datafile reload", ""]
    if "error" in report:
        return lines + _failed(report)
    rows = report["rows"]
    lines += [
        "`bench/bench_startup.py`, datafiles made by `bench/gen_datafile.py` (valid for"
        " trackd and optimizely-sdk). Start-up: `trackd serve` from exec to its `started` log"
        " line and to the first answered Activate (fresh channel), the daemon's CPU seconds"
        f" until `started` and its peak RSS; median of {rows[0]['runs']} starts, one daemon at"
        " a time, no load. Reload: `parse_datafile` of the same text in this process (what"
        " a hot reload does before the atomic swap), `json.loads` alone, the memory the"
        " snapshot holds and the parse's allocation peak (tracemalloc), the longest event-loop"
        " stall (a 1 ms ticker) while the parse runs in a thread as `Reloader.offer` does"
        " versus inline on the loop, and optimizely-sdk's constructor (with its schema"
        " validation) on the same text.",
        "",
    ]
    table_rows = []
    for row in rows:
        sdk = row.get("sdk_constructor_s")
        table_rows.append(
            [
                row["datafile"],
                _size(row["bytes"]),
                f"{row['experiments']:,}",
                f"{row['started_s']:.2f}",
                f"{row['first_activate_s']:.2f}",
                f"{row['cpu_to_started_s']:.2f}",
                f"{row['peak_rss_mb']:.0f}",
                f"{row['parse_datafile_s'] * 1000:,.1f}",
                f"{row['json_loads_s'] * 1000:,.1f}",
                f"{row['snapshot_mb']:.1f}",
                f"{row['parse_alloc_peak_mb']:.1f}",
                _stalls(row),
                f"{sdk * 1000:,.0f}" if sdk is not None else "n/a",
            ]
        )
    lines += _table(
        [
            "datafile",
            "size",
            "experiments",
            "start s",
            "first Activate s",
            "CPU s",
            "peak RSS MB",
            "reload: parse ms",
            "json.loads ms",
            "snapshot MB",
            "parse alloc peak MB",
            "loop stall ms: thread / inline",
            "SDK constructor ms",
        ],
        table_rows,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    )
    return lines


def _stalls(row: dict[str, Any]) -> str:
    thread, inline = row["loop_stall_thread_s"], row["loop_stall_inline_s"]
    return f"{thread * 1000:,.0f} / {inline * 1000:,.0f}"


def _size(count: int) -> str:
    return f"{count / (1 << 20):.1f} MB" if count >= 1 << 20 else f"{count / 1024:.0f} KB"


def section_scaling(report: dict[str, Any]) -> list[str]:
    lines = ["### 6. Scaling: 1 vs 2 worker processes, local and Redis activation stores", ""]
    if "error" in report:
        return lines + _failed(report)
    if not report["available"]:
        lines += [
            "`bench/bench_scaling.py` runs when `trackd serve --help` lists `--workers` and"
            " `--activation-store` (its Redis rows when `redis-server` is on PATH). Here: "
            f"{report['reason']}.",
            "",
        ]
        na = "not available in this build"
        return lines + _table(
            ["workers", "store", "req/s", "p50 ms", "p99 ms", "CPU %", "peak RSS MB"],
            [[str(w), store, na, na, na, na, na] for store in ("local", "redis") for w in (1, 2)],
            "|---:|---|---:|---:|---:|---:|---:|",
        )
    lines += [
        "`bench/bench_scaling.py`: `trackd serve --workers N --activation-store local` (the"
        " host-local LMDB store under the data dir, the default of --workers > 1, no Redis),"
        " then with one redis-server (loopback, no persistence) as `--activation-store"
        ' redis://...` ("Redis store" tables), ghz over several connections (SO_REUSEPORT'
        " spreads connections, not requests). CPU and peak RSS are summed over trackd's"
        " process tree; redis-server's CPU is in the notes.",
        "",
    ]
    return lines + point_tables(
        [Point(**p) for p in report["points"]], "####", ratio_label="vs 1 worker"
    )


def section_delivery(report: dict[str, Any]) -> list[str]:
    lines = ["### 7. Delivery: draining a backlog, one batch at a time vs in rounds", ""]
    if "error" in report:
        return lines + _failed(report)
    lines += [
        "`bench/bench_delivery.py`: an outbox filled with TrackStream-shaped rows (500 events"
        " each) or with unary calls' events, appended one call at a time or 64 concurrent"
        " calls at a time (calls committed together share a row since 2026-12-05), drained"
        " by the dispatcher to the file sink"
        " through its encoder process, as `trackd serve` runs it, with"
        f" `--event-batch-size {report['batch_size']}`; `round_batches=1` delivers one batch"
        " at a time (trackd before 2026-12-05), 16 is the default. CPU is the daemon"
        " process's (user + sys, all threads), not the encoder's. Median of"
        f" {report['repeats']} alternating runs.",
        "",
    ]
    return (
        lines
        + _table(
            [
                "appended as",
                "events",
                "rows",
                "batches per round",
                "events/s",
                "daemon CPU us/event",
            ],
            [
                [
                    row["shape"],
                    f"{row['events']:,}",
                    f"{row['rows']:,}",
                    str(row["round_batches"]),
                    f"{row['events_per_s']:,.0f}",
                    f"{row['cpu_us_per_event']:.2f}",
                ]
                for row in report["rows"]
            ],
            "|---|---:|---:|---:|---:|---:|",
        )
        + _delivery_http(report.get("http", []))
    )


def _delivery_http(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        f"To an HTTP endpoint (a local receiver answering each POST after {rows[0]['rtt_ms']:.0f}"
        " ms, as logx would a round trip away), TrackStream rows, rounds of 16 batches of 100:"
        " 1 connection is one POST at a time (trackd before 2026-12-05), 4 the default"
        " `--event-max-connections`. No CPU column: the receiver runs in the measured process.",
        "",
    ]
    return lines + _table(
        ["connections", "events", "batches", "events/s"],
        [
            [
                str(row["connections"]),
                f"{row['events']:,}",
                f"{row['batches']:,}",
                f"{row['events_per_s']:,.0f}",
            ]
            for row in rows
        ],
        "|---:|---:|---:|---:|",
    )


def section_decide(report: dict[str, Any]) -> list[str]:
    if "error" in report:
        return ["### 8. Decide, in-process: trackd vs optimizely-sdk", "", *_failed(report)]
    return bench_decide.section(report, "### 8.")


def section_agent(report: dict[str, Any]) -> list[str]:
    if "error" in report:
        return ["### 9. Optimizely Agent vs trackd", "", *_failed(report)]
    return bench_agent.section(report, "### 9.")


def section_http(report: dict[str, Any]) -> list[str]:
    if "error" in report:
        return ["### 10. HTTP beside gRPC", "", *_failed(report)]
    return bench_http.section(report, "### 10.")


def section_outbox_sync(report: dict[str, Any]) -> list[str]:
    title = "### 11. Durability: `--outbox-sync full` against `normal`"
    if "error" in report:
        return [title, "", *_failed(report)]
    return [
        title,
        "",
        "`bench/bench_outbox_sync.py`: two daemons per datafile, one per mode, and for Track"
        " the bare grpc.aio servers of section 1 (stock, and on uvloop as trackd), in"
        f" {report['rounds']} alternating rounds (median shown); Track by {report['loadgen']},"
        f" {report['track_seconds']} s per point; Decide of every flag of 50 for"
        f" {report['decide_users']:,} new users from 4 client threads. CPU is the daemon's"
        " process tree's per call. full: every commit fsynced before its answer; normal:"
        " SQLite synchronous=NORMAL and a background fsync at least once a second.",
        "",
        *bench_outbox_sync.table(report),
        "",
        "Where the CPU per call ran (`Server.cpu_split`, medians of the rounds): the event"
        " loop's thread; the other threads (trackd: the outbox writer's SQLite work and"
        " fsyncs, the WAL syncer, to_thread workers; both: gRPC's own threads); the child"
        " processes (trackd's event encoder).",
        "",
        *bench_outbox_sync.split_table(report),
        "",
    ]


def section_decide_delivered(report: dict[str, Any]) -> list[str]:
    title = "### 12. Decide with its events delivered: the SDK in-process against the daemon"
    if "error" in report:
        return [title, "", *_failed(report)]
    return [
        title,
        "",
        "`bench/bench_decide_delivered.py`: section 8's users and 50-flag datafile, every"
        " decision event POSTed to one local receiver that counts them. The SDK runs in a child"
        " process with its own EventDispatcher (a new requests session per POST) pointed at the"
        " receiver; its CPU is that whole process's over the pass (the batch processor's"
        " thread included, its queue unbounded as its default one drops events past 1,000,"
        " stopped at the end so every event is sent). The daemon"
        " (`--event-endpoint` the receiver) gets one Decide of every flag per user from 4"
        " client threads; its CPU is its process tree's until idle, so committing and"
        " delivering the events is in it.",
        "",
        *bench_decide_delivered.table(report),
        "",
    ]


def markdown(
    reports: dict[str, Any], info: dict[str, str], plot: Path | None, quick: bool, now: dt.datetime
) -> str:
    lines = [
        f"## All scenarios: `bench/run_all.py{' --quick' if quick else ''}`"
        f" ({now.strftime('%Y-%m-%d %H:%M:%S %z')})",
        "",
        "Machine: "
        + ", ".join(f"{k} {v}" for k, v in info.items())
        + ". Everything (servers, load generators, other work on the machine) shares these"
        " cores: absolute figures drift between runs, the side-by-side ratios hold.",
        "",
        "Scenario wall times: "
        + ", ".join(f"{name} {r['wall_s']:.0f} s" for name, r in reports.items())
        + ".",
        "",
    ]
    heads = headline(reports)
    if heads:
        lines += ["### Goals", ""]
        lines += _table(
            ["what", "measured", "goal", "met"], [list(row) for row in heads], "|---|---:|---|---|"
        )
    if plot is not None:
        lines += [f"![benchmark plot]({plot.name})", ""]
    renderers = {
        "grpc": section_grpc,
        "decisions": section_decisions,
        "activation": section_activation,
        "startup": section_startup,
        "scaling": section_scaling,
        "delivery": section_delivery,
        "decide": section_decide,
        "agent": section_agent,
        "http": section_http,
        "outbox_sync": section_outbox_sync,
        "decide_delivered": section_decide_delivered,
    }
    for name, report in reports.items():
        lines += renderers[name](report)
    return "\n".join(lines)


# --- plot --------------------------------------------------------------------------------


def draw(reports: dict[str, Any], info: dict[str, str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    figure.suptitle(f"{title}  ({info.get('nproc')} x {info.get('cpu')})", fontsize=12)
    points = grpc_points(reports)

    ax = axes[0][0]
    for method, style in (("Activate", "-"), ("Track", "--")):
        for target, color in (
            ("trackd", "tab:blue"),
            ("bare", "tab:gray"),
            ("bare+durable", "tab:green"),
        ):
            rows = [p for p in points if p.scenario == f"unary {method}" and p.target == target]
            if rows:
                ax.plot(
                    [str(p.concurrency) for p in rows],
                    [p.throughput for p in rows],
                    style,
                    marker="o",
                    color=color,
                    label=f"{target} {method}",
                )
    ax.set(title="1. Unary: req/s by concurrency", xlabel="concurrent requests", ylabel="req/s")
    _legend(ax)

    ax = axes[0][1]
    for target, color in (
        ("trackd", "tab:blue"),
        ("bare", "tab:gray"),
        ("bare+durable", "tab:green"),
    ):
        rows = [p for p in points if p.scenario == "stream" and p.target == target]
        if rows:
            ax.plot(
                [p.batch for p in rows],
                [p.throughput for p in rows],
                marker="o",
                color=color,
                label=target,
            )
    ax.axhline(GOALS["stream_500"], color="tab:green", linestyle=":", label="goal at 500/batch")
    ax.set(
        title="2. TrackStream: events/s acknowledged",
        xlabel="events per batch",
        ylabel="events/s",
        xscale="log",
        yscale="log",
    )
    _legend(ax)

    ax = axes[0][2]
    decisions = reports.get("decisions", {})
    if "us_per_decision" in decisions:
        us = decisions["us_per_decision"]
        labels = ["trackd\ndecide", "SDK\nget_variation", "SDK\nactivate"]
        values = [us["trackd_decide"], us["sdk_get_variation"], us["sdk_activate"]]
        bars = ax.bar(labels, values, color=["tab:blue", "tab:orange", "tab:red"])
        ax.bar_label(bars, fmt="%.2f")
        ax.set_yscale("log")
    else:
        _unavailable(ax, decisions)
    ax.set(title="3. In-process decision, us (lower is better)", ylabel="us per decision")

    ax = axes[1][0]
    activation = reports.get("activation", {})
    if "bytes_per_entry" in activation:
        keys = list(activation["bytes_per_entry"])
        x = range(len(keys))
        store = [activation["bytes_per_entry"][k]["store_rss"] for k in keys]
        naive = [activation["bytes_per_entry"][k]["naive_rss"] for k in keys]
        ax.bar([i - 0.2 for i in x], store, 0.4, label="trackd store", color="tab:blue")
        ax.bar([i + 0.2 for i in x], naive, 0.4, label="naive OrderedDict", color="tab:gray")
        ax.set_xticks(list(x), [k.replace("_user_ids", "").replace("_", "\n") for k in keys])
        _legend(ax)
    else:
        _unavailable(ax, activation)
    ax.set(title="4. Activation cache: bytes per entry (RSS)", ylabel="bytes/entry")

    ax = axes[1][1]
    startup = reports.get("startup", {})
    if startup.get("rows"):
        rows = startup["rows"]
        labels = [r["datafile"].replace("bundled ", "") for r in rows]
        x = range(len(rows))
        ax.bar(
            [i - 0.2 for i in x],
            [r["first_activate_s"] for r in rows],
            0.4,
            color="tab:blue",
            label="exec -> first Activate (s)",
        )
        ax.bar(
            [i + 0.2 for i in x],
            [r["parse_datafile_s"] for r in rows],
            0.4,
            color="tab:orange",
            label="reload: parse_datafile (s)",
        )
        ax.set_xticks(list(x), labels)
        ax.set_ylabel("seconds")
        rss = ax.twinx()
        rss.plot(list(x), [r["peak_rss_mb"] for r in rows], "k-o", label="peak RSS (MB)")
        rss.set_ylabel("peak RSS MB")
        rss.set_ylim(bottom=0)
        handles = ax.get_legend_handles_labels()
        more = rss.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=8, loc="upper left")
    else:
        _unavailable(ax, startup)
    ax.set_title("5. Start-up and reload by datafile size")

    ax = axes[1][2]
    scaling = reports.get("scaling", {})
    if scaling.get("available") and scaling.get("points"):
        rows = [Point(**p) for p in scaling["points"]]
        for method, color in (("Activate", "tab:blue"), ("Track", "tab:purple")):
            mine = [p for p in rows if p.scenario == f"scaling {method}"]
            ax.plot(
                [p.target.split("x")[-1] for p in mine],
                [p.throughput for p in mine],
                marker="o",
                color=color,
                label=method,
            )
        ax.set(xlabel="worker processes", ylabel="req/s")
        _legend(ax)
    else:
        ax.text(
            0.5,
            0.5,
            "not available in this build\n\n" + _wrap(scaling.get("reason") or ""),
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=9,
        )
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title("6. Redis store: 1 vs 2 workers")

    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _legend(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _unavailable(ax: Any, report: dict[str, Any]) -> None:
    ax.text(
        0.5,
        0.5,
        f"failed: {report.get('error', 'not run')}",
        ha="center",
        va="center",
        transform=ax.transAxes,
    )


def _wrap(text: str, width: int = 48) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


# --- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts, seconds: a smoke run")
    parser.add_argument("--json", action="store_true", help="print every report as JSON")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="where the .md and .png go (default bench/results; --quick writes only here)",
    )
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    args = parser.parse_args(argv)

    info = machine()
    reports = {name: run_scenario(name, args.quick) for name in args.only}
    info["loadavg"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    now = dt.datetime.now().astimezone()
    today = now.date().isoformat()
    results_dir = args.results_dir or (None if args.quick else BENCH / "results")
    plot = None
    if results_dir is not None:
        plot = results_dir / f"{today}-{now.strftime('%H%M%S')}.png"
        results_dir.mkdir(parents=True, exist_ok=True)
        draw(reports, info, plot, f"trackd benchmarks, {now.strftime('%Y-%m-%d %H:%M')}")
        markdown_path = append_results(
            results_dir, now, markdown(reports, info, plot, args.quick, now)
        )
        print(f"appended to {markdown_path}; plot {plot}", file=sys.stderr)
    if args.json:
        print(json.dumps({"machine": info, "reports": reports}, indent=2))
    elif results_dir is None:
        print(markdown(reports, info, None, args.quick, now))
    failed = [name for name, report in reports.items() if "error" in report]
    if failed:
        print(f"failed scenarios: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
