"""Optimizely Agent beside trackd: unary Activate, Track and Decide in one run (issue 17).

Optimizely Agent (github.com/optimizely/agent: a Go REST service around the Go SDK, events
in an in-memory queue) runs as a peer process (bench/agent_peer.py: built from its public
source archive into build/agent/ once, then reused); when the archive is absent or the build
fails, Agent is skipped with the reason printed and trackd is measured alone.

Both get the same datafiles from a local HTTP server on 127.0.0.1 (Agent fetches
`/datafiles/<sdk key>.json`, trackd is started with the same file) and deliver their events
to that same server (Agent in its default batches of 10, trackd from its durable outbox),
which counts the events each delivered per user id prefix, that is per point. Agent runs
with its own config.yaml, but log level warn (its INFO line per request otherwise dominates)
and ODP off (it would call out).

Points, each run against Agent then trackd, a new user per call: Activate and Track at
concurrency 1, 16, 64 (the example datafile); Decide of every flag of bench_decide's 50-flag
datafile at its 4 callers (Agent's POST /v1/decide without keys). Load generators on the
same cores: for Agent bench/httpload (a Go program like hey, with a new body per request:
hey sends one body), for trackd ghz (else bench/loadgen.py's Python workers, and no Decide).
Reported per point: req/s, p50/p99, the server process tree's CPU per call (from /proc, as
for every trackd benchmark) during the point and until the server is idle again, and the
events delivered against the calls acknowledged: Agent drops events when a queue is full.

    .venv/bin/python -m bench.bench_agent [--quick] [--seconds S] [--json] [--no-write]

--quick is the smoke run: 0.5 s points, Activate and Track at concurrency 1 and 16, Agent
only if already built (it never builds it). The full run (15 s points, the issue's method)
appends a section to bench/results/<YYYY-MM-DD>.md unless --no-write (run_all renders it in
its own section).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.agent_peer import (
    ARCHIVE,
    DROP_LINE,
    Peer,
    agent_binary,
    peer_server,
    start_agent,
)
from bench.bench_decide import users
from bench.gen_datafile import build_flags
from bench.harness import (
    DATAFILE,
    Point,
    Server,
    machine,
    report_run,
    settle,
    start_trackd,
)
from bench.loadgen import (
    GHZ_VERSION,
    activate_json,
    find_ghz,
    ghz_unary,
    httpload_binary,
    httpload_unary,
    python_unary,
    track_json,
)

SDK_KEY = "trackdbench"  # the example datafile's, for Activate and Track
FLAGS_SDK_KEY = "trackdflags"  # the generated flags datafile's, for Decide
METHODS = ("Activate", "Track")
DECIDE_FLAGS = 50  # bench/bench_decide.py's datafile
DECIDE_CONCURRENCY = 4  # bench/bench_decide.py's client threads
# A user of bench_decide's that some flags' audiences match and others miss.
DECIDE_ATTRIBUTES = users(1)[0][1]


@dataclass(frozen=True)
class Call:
    """One call as each server gets it, for the same user: trackd's request as ghz's JSON,
    Agent's REST path and body."""

    method: str
    grpc_json: dict[str, Any]
    agent_path: str
    agent_body: dict[str, Any]
    sdk_key: str
    payload: str  # how the results name it


def call(method: str, user: str) -> Call:
    if method == "Activate":
        grpc_json = activate_json(user, 0)
        return Call(
            method,
            grpc_json,
            f"/v1/activate?experimentKey={grpc_json['experiment_key']}",
            {"userId": user, "userAttributes": grpc_json["attributes"]},
            SDK_KEY,
            "ab_running, a new user per call, 2 attributes",
        )
    if method == "Track":
        grpc_json = {**track_json(1), "user_id": user}  # my_conversion
        return Call(
            method,
            grpc_json,
            f"/v1/track?eventKey={grpc_json['event_key']}",
            {
                "userId": user,
                "userAttributes": grpc_json["attributes"],
                "eventTags": grpc_json["tags"],
            },
            SDK_KEY,
            "my_conversion, a new user per call (never activated), 2 attributes, 2 tags",
        )
    # Decide with no flag keys: every flag, as Agent's /v1/decide without `keys`.
    return Call(
        method,
        {"user_id": user, "attributes": DECIDE_ATTRIBUTES},
        "/v1/decide",
        {"userId": user, "userAttributes": DECIDE_ATTRIBUTES},
        FLAGS_SDK_KEY,
        f"every flag of bench_decide's {DECIDE_FLAGS}-flag datafile (sendFlagDecisions on),"
        f" a new user per call, {len(DECIDE_ATTRIBUTES)} attributes",
    )


def agent_call(server: Server, request: Call) -> bool:
    """One call (the readiness probe): whether Agent answered it with something."""
    http_request = urllib.request.Request(
        f"http://{server.address}{request.agent_path}",
        data=json.dumps(request.agent_body).encode(),
        headers={"X-Optimizely-SDK-Key": request.sdk_key, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(http_request, timeout=5) as response:
        answer = json.loads(response.read())
    return bool(answer) and response.status == 200


def agent_unary(
    httpload: Path, server: Server, method: str, concurrency: int, seconds: float, tag: str
) -> Point:
    request = call(method, f"{tag}-{{n}}")  # httpload numbers each request's {n}
    return httpload_unary(
        httpload,
        server,
        f"http://{server.address}{request.agent_path}",
        json.dumps(request.agent_body),
        [f"X-Optimizely-SDK-Key: {request.sdk_key}"],
        concurrency,
        seconds,
        (f"unary {method}", server.name, request.payload),
    )


def trackd_unary(
    ghz: str | None, server: Server, method: str, concurrency: int, seconds: float, tag: str
) -> Point:
    if ghz is None:  # Activate and Track only, users of their own
        return python_unary(server, method, concurrency, seconds, 2_000_000, tag, 2)
    request = call(method, f"{tag}-{{{{.RequestNumber}}}}")  # ghz numbers each request
    return ghz_unary(
        ghz,
        server,
        method,
        concurrency,
        seconds,
        tag,
        request=(request.grpc_json, request.payload),
        skip_first=0,  # every call acknowledged is counted, as its events are
    )


# --- the run ------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="0.5 s points; Agent only if already built"
    )
    parser.add_argument("--seconds", type=float, default=None, help="per point (default 15)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=None)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-write", action="store_true", help="do not append to bench/results")
    parser.add_argument("--agent-archive", type=Path, default=ARCHIVE)
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    seconds = args.seconds or (0.5 if quick else 15.0)
    concurrencies = args.concurrency or ([1, 16] if quick else [1, 16, 64])
    settle_limit = 0.0 if quick else 90.0
    idle_limit = 5.0 if quick else 90.0
    binary, reason = agent_binary(args.agent_archive, build=not quick)
    httpload: Path | None = None
    if binary is not None:
        httpload, reason = httpload_binary()
    if httpload is None:
        binary = None
        print(f"Optimizely Agent skipped: {reason}", file=sys.stderr, flush=True)
    ghz = find_ghz()
    run_id = f"r{os.getpid()}-{int(time.time())}"
    plan = [(method, c) for method in METHODS for c in concurrencies]
    if ghz is not None:  # bench/loadgen.py's Python workers send only Activate and Track
        plan.append(("Decide", DECIDE_CONCURRENCY))
    points: list[Point] = []
    rows: list[dict[str, Any]] = []
    drops = 0
    datafiles = {SDK_KEY: DATAFILE.read_bytes(), FLAGS_SDK_KEY: build_flags(DECIDE_FLAGS).encode()}
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp, peer_server(datafiles) as peer:
        workdir = Path(tmp)
        flags_path = workdir / "flags.json"
        flags_path.write_bytes(datafiles[FLAGS_SDK_KEY])
        (workdir / "flags").mkdir()
        trackd_options = ["--event-endpoint", peer.events_url("trackd")]
        trackd = {
            SDK_KEY: start_trackd(workdir, extra=trackd_options),
            FLAGS_SDK_KEY: start_trackd(
                workdir / "flags", extra=trackd_options, datafile=flags_path
            ),
        }
        servers = list(trackd.values())
        try:
            agent = None
            if binary is not None:
                try:
                    agent = start_agent(
                        binary,
                        peer,
                        workdir,
                        # Agent loads an SDK key's datafile on its first call: each key's here.
                        lambda agent: all(
                            agent_call(agent, call(m, "warmup-0")) for m in ("Activate", "Decide")
                        ),
                    )
                    servers.insert(0, agent)
                except RuntimeError as error:  # a peer that does not start fails no bench
                    first, *log = str(error).splitlines()
                    binary, reason = None, " ".join([first, *[line for line in log if line][-1:]])
                    print(f"Optimizely Agent skipped: {reason}", file=sys.stderr, flush=True)
            for method, c in plan:
                for server in ([agent] if agent else []) + [trackd[call(method, "").sdk_key]]:
                    settle(server, settle_limit)
                    tag = f"{run_id}-{method}-{c}-{server.name}"
                    cpu_before = server.cpu_seconds()
                    if server is agent:
                        assert httpload is not None
                        point = agent_unary(httpload, server, method, c, seconds, tag)
                    else:
                        point = trackd_unary(ghz, server, method, c, seconds, tag)
                    # The point's CPU again, until the server is idle: what delivering the
                    # point's events costs after the last call is in it.
                    settle(server, idle_limit)
                    until_idle = server.cpu_seconds() - cpu_before
                    points.append(point)
                    rows.append(
                        {
                            "target": server.name,
                            "scenario": point.scenario,
                            "concurrency": c,
                            # Python workers name their users otherwise: not counted.
                            "prefix": tag if server is agent or ghz else None,
                            "cpu_us_per_call_until_idle": 1e6 * until_idle / max(1, point.ops),
                        }
                    )
                    _progress(point, quick)
            delivered_wait = wait_delivered(servers, peer, 5.0 if quick else 60.0)
        finally:
            for server in servers:
                server.stop()
        if binary is not None:
            drops = (workdir / "agent.log").read_text(errors="replace").count(DROP_LINE)
        for row, point in zip(rows, points, strict=True):
            prefix = row.pop("prefix")
            row["delivered"] = peer.delivered_for(point.target, prefix) if prefix else None
            row["acknowledged"] = point.ops
    return {
        "machine": machine(),
        "agent": {
            "available": binary is not None,
            "reason": reason,
            "archive": args.agent_archive.name,
            "drop_log_lines": drops,
        },
        "trackd_loadgen": f"ghz {GHZ_VERSION}" if ghz else "python grpc.aio (ghz not found)",
        "seconds": seconds,
        "delivered_wait_s": delivered_wait,
        "points": [asdict(p) for p in points],
        "delivery": rows,
    }


def wait_delivered(servers: list[Server], peer: Peer, limit: float) -> float:
    """Waits (at most `limit` s) until each server is idle and its delivered count has not
    moved for 2 s: trackd drains its outbox; Agent sends what its queues still hold. A
    partial batch of Agent's (fewer than 10 events) waits for its 30 s flush tick."""
    started = time.perf_counter()
    for server in servers:
        settle(server, max(0.0, limit - (time.perf_counter() - started)))
    last, still_since = -1, time.perf_counter()
    while time.perf_counter() - started < limit:
        now = sum(peer.total(s.name) for s in servers)
        if now != last:
            last, still_since = now, time.perf_counter()
        elif time.perf_counter() - still_since >= 2.0:
            break
        time.sleep(0.25)
    return time.perf_counter() - started


def _progress(point: Point, quick: bool) -> None:
    if not quick:
        print(
            f"{point.scenario:15} c={point.concurrency:<3} {point.target:7}"
            f" {point.throughput:10,.0f} req/s  p50 {point.p50_ms:7.2f} ms"
            f"  p99 {point.p99_ms:7.2f} ms  {point.cpu_us_per_event:7.0f} us CPU/call"
            f"  errors {point.errors}",
            file=sys.stderr,
            flush=True,
        )


# --- markdown ------------------------------------------------------------------------------


# Each column pair of the table, Agent's and trackd's: its name and a point's cell.
COLUMNS: tuple[tuple[str, Callable[[Point, dict[str, Any]], str]], ...] = (
    ("req/s", lambda p, row: f"{p.throughput:,.0f}"),
    ("p50 / p99 ms", lambda p, row: f"{p.p50_ms:.2f} / {p.p99_ms:.2f}"),
    ("server CPU per call", lambda p, row: f"{p.cpu_us_per_event:,.0f} us"),
    (
        "server CPU per call, until idle",
        lambda p, row: f"{row['cpu_us_per_call_until_idle']:,.0f} us",
    ),
    ("events delivered / acknowledged", lambda p, row: _delivered(row)),
)


def section(report: dict[str, Any], heading: str) -> list[str]:
    """The side-by-side table under `heading` ("##", "### 9."): run_all's section and this
    module's own results section."""
    agent = report["agent"]
    points = [Point(**p) for p in report["points"]]
    measured_points = {
        (p.scenario, p.concurrency, p.target): (p, row)
        for p, row in zip(points, report["delivery"], strict=True)
    }
    payloads = {p.scenario: p.payload for p in points}
    lines = [
        f"{heading} Optimizely Agent vs trackd: unary Activate, Track and Decide",
        "",
        "`bench/bench_agent.py`: Optimizely Agent (built from its source archive"
        f" `{agent['archive']}`, REST, its own config.yaml but log level warn and ODP off,"
        " in-memory event queue) and trackd (gRPC, durable SQLite outbox, default settings but"
        " a 100M-event outbox cap), same datafiles, both delivering their events over HTTP to"
        " one local receiver that counts them. Point by point, Agent then trackd,"
        f" {report['seconds']:g} s each. Load generators on the same cores: bench/httpload (Go,"
        f" like hey, a new body per request) for Agent, {report['trackd_loadgen']} for trackd."
        " Server CPU per call: the server's process tree (all threads) from /proc, during the"
        " point; until idle: from the point's start until the server is idle again, so"
        " delivering the point's events is in it. Events delivered: counted by the receiver"
        f" after the run (waited {report['delivered_wait_s']:.0f} s for the backlogs), against"
        " the calls acknowledged (a last partial batch of Agent's, under 10 events, waits for"
        " its 30 s flush tick and may be missed).",
        "",
        *[
            f"- {scenario.removeprefix('unary ')}: {payload}."
            for scenario, payload in payloads.items()
        ],
        "",
    ]
    if not agent["available"]:
        lines += [f"**Optimizely Agent skipped**: {agent['reason']}.", ""]
    lines += [
        "| call | concurrency | "
        + " | ".join(f"{who} {name}" for name, _ in COLUMNS for who in ("Agent", "trackd"))
        + " |",
        "|---|---:|" + "---:|" * 2 * len(COLUMNS),
    ]
    for scenario, concurrency in dict.fromkeys((p.scenario, p.concurrency) for p in points):
        cells = []
        for _, render in COLUMNS:
            for target in ("agent", "trackd"):
                found = measured_points.get((scenario, concurrency, target))
                cells.append(render(*found) if found else "n/a")
        lines.append(
            f"| {scenario.removeprefix('unary ')} | {concurrency} | " + " | ".join(cells) + " |"
        )
    lines.append("")
    if agent["available"]:
        lines += [
            f"Agent logged `{DROP_LINE}. Discarding event` {agent['drop_log_lines']:,} times"
            " (each line one event dropped from its event queue, or a batch of up to 10 from"
            " its dispatch queue).",
            "",
        ]
    errors = [f"- {p.target} {p.scenario} c={p.concurrency}: {n}" for p in points for n in p.notes]
    if errors:
        lines += ["Errors:", "", *errors, ""]
    return lines


def _delivered(row: dict[str, Any]) -> str:
    delivered, acknowledged = row["delivered"], row["acknowledged"]
    if delivered is None:
        return "not counted"
    if not acknowledged:
        return f"{delivered:,} / 0"
    if row["scenario"] == "unary Decide":  # a decision event per flag: many per call
        return f"{delivered:,} / {acknowledged:,} calls ({delivered / acknowledged:.1f} per call)"
    return f"{delivered:,} / {acknowledged:,} ({100 * delivered / acknowledged:.0f}%)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report = run(args)
    report_run(
        report,
        args.argv,
        section,
        "bench/bench_agent.py",
        as_json=args.json,
        write=not (args.quick or args.no_write),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
