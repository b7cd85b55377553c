"""trackd's HTTP port beside its gRPC port: unary Activate, Track and Decide through one
daemon's three front ends, in one run (issue 16, "Speed").

One trackd (durable SQLite outbox, file event sink, default settings but a 100M-event outbox
cap) serves gRPC and `--http-listen`. Each point is one call at one concurrency, sent through
every front end in turn (so that drift on this shared machine hits them all), a new user per
call, from a server idle before it:

  gRPC          ghz
  Connect JSON  POST /trackd.v1.TrackingService/<RPC>, application/json   (bench/httpload)
  Agent /v1     POST /v1/activate?experimentKey=, /v1/track?eventKey=,
                /v1/decide                                                (bench/httpload)

The calls are bench/bench_agent.py's, so both benchmarks send the same: Activate
(ab_running) and Track (my_conversion, by a user never activated) on the example datafile;
Decide of every flag of bench/gen_datafile.py's build_flags(50) on a second daemon serving
that datafile; concurrency 1, 16, 64. Reported per point: req/s, p50/p99, the server process
tree's CPU per call (from /proc, as for every trackd benchmark) during the point and until
the server is idle again, each beside gRPC's. Needs ghz and Go (which builds bench/httpload);
without either nothing is measured and the report says why.

    .venv/bin/python -m bench.bench_http [--quick] [--seconds S] [--json] [--no-write]

The full run appends a section to bench/results/<YYYY-MM-DD>.md unless --no-write (run_all
renders it in its own section); --quick (0.5 s points, concurrency 1 and 16) writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from bench.bench_agent import DECIDE_FLAGS, Call, call
from bench.gen_datafile import build_flags
from bench.harness import (
    DATAFILE,
    SERVICE,
    Point,
    Server,
    machine,
    report_run,
    settle,
    start_trackd,
    started_port,
)
from bench.loadgen import (
    GHZ_VERSION,
    find_ghz,
    ghz_unary,
    httpload_binary,
    httpload_unary,
)
from trackd.v1 import tracking_service_pb2 as pb

GRPC, CONNECT, AGENT = "gRPC", "Connect JSON", "Agent /v1"
PROTOCOLS = (GRPC, CONNECT, AGENT)


def connect_body(request: Call) -> str:
    """The request as a Connect client sends it: proto JSON with lowerCamelCase names."""
    message = json_format.ParseDict(request.grpc_json, getattr(pb, f"{request.method}Request")())
    return json.dumps(json_format.MessageToDict(message))


@dataclass(frozen=True)
class Daemon:
    server: Server
    http_port: int


def start_daemon(workdir: Path, datafile: Path) -> Daemon:
    workdir.mkdir()
    server = start_trackd(workdir, extra=["--http-listen", "127.0.0.1:0"], datafile=datafile)
    http_port = started_port(workdir / f"{server.name}.log", "http_port")
    if http_port is None:
        server.stop()
        raise RuntimeError("trackd's started line names no http_port")
    return Daemon(server, http_port)


def measure(
    tools: tuple[str, Path], daemon: Daemon, protocol: str, method: str, c: int, seconds: float
) -> Point:
    ghz, httpload = tools
    server = daemon.server
    tag = f"r{os.getpid()}-{int(time.time() * 1000)}-{method}-{c}"
    if protocol == GRPC:
        request = call(method, f"{tag}-{{{{.RequestNumber}}}}")  # ghz numbers each request
        point = ghz_unary(
            ghz,
            server,
            method,
            c,
            seconds,
            tag,
            request=(request.grpc_json, request.payload),
            skip_first=0,  # httpload counts every call too
        )
        return replace(point, target=GRPC)
    request = call(method, f"{tag}-{{n}}")  # httpload numbers each request's {n}
    base = f"http://127.0.0.1:{daemon.http_port}"
    if protocol == CONNECT:
        url, body = f"{base}/{SERVICE}/{method}", connect_body(request)
        headers = ["Connect-Protocol-Version: 1"]
    else:
        url, body = f"{base}{request.agent_path}", json.dumps(request.agent_body)
        headers = [f"X-Optimizely-SDK-Key: {request.sdk_key}"]
    labels = (f"unary {method}", protocol, request.payload)
    return httpload_unary(httpload, server, url, body, headers, c, seconds, labels)


def with_grpc_ratios(points: list[Point]) -> None:
    """Each HTTP point's throughput over gRPC's at the same call and concurrency."""
    grpc = {(p.scenario, p.concurrency): p for p in points if p.target == GRPC}
    for p in points:
        base = grpc.get((p.scenario, p.concurrency))
        if p.target != GRPC and base is not None and base.throughput > 0:
            p.ratio = p.throughput / base.throughput


# --- the run ------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.5 s points, concurrency 1, 16")
    parser.add_argument("--seconds", type=float, default=None, help="per point (default 5)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=None)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-write", action="store_true", help="do not append to bench/results")
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    seconds = args.seconds or (0.5 if quick else 5.0)
    concurrencies = args.concurrency or ([1, 16] if quick else [1, 16, 64])
    settle_limit = 0.0 if quick else 90.0
    idle_limit = 5.0 if quick else 90.0
    report: dict[str, Any] = {"machine": machine(), "seconds": seconds, "points": []}
    ghz = find_ghz()
    httpload, reason = httpload_binary()
    if ghz is None:
        reason = f"ghz not found: go install github.com/bojand/ghz/cmd/ghz@{GHZ_VERSION}"
    if ghz is None or httpload is None:
        print(f"HTTP beside gRPC not measured: {reason}", file=sys.stderr, flush=True)
        return {**report, "available": False, "reason": reason}
    points: list[Point] = []
    until_idle: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        workdir = Path(tmp)
        flags = workdir / "flags.json"
        flags.write_text(build_flags(DECIDE_FLAGS))
        for name, datafile, methods in (
            ("example", DATAFILE, ("Activate", "Track")),
            ("flags", flags, ("Decide",)),
        ):
            daemon = start_daemon(workdir / name, datafile)
            try:
                for method in methods:
                    for c in concurrencies:
                        for protocol in PROTOCOLS:
                            server = daemon.server
                            settle(server, settle_limit)
                            cpu_before = server.cpu_seconds()
                            point = measure((ghz, httpload), daemon, protocol, method, c, seconds)
                            # The point's CPU again, until the server is idle: delivering its
                            # events (many per Decide) is in it, however much of that the
                            # point's own load put off until after its last call.
                            settle(server, idle_limit)
                            cpu = server.cpu_seconds() - cpu_before
                            points.append(point)
                            until_idle.append(1e6 * cpu / max(1, point.ops))
                            _progress(point, until_idle[-1], quick)
            finally:
                daemon.server.stop()
    with_grpc_ratios(points)
    return {
        **report,
        "available": True,
        "reason": "",
        "points": [asdict(p) for p in points],
        "cpu_us_until_idle": until_idle,  # per call, one per point
    }


def _progress(point: Point, until_idle: float, quick: bool) -> None:
    if not quick:
        print(
            f"{point.scenario:15} c={point.concurrency:<3} {point.target:12}"
            f" {point.throughput:10,.0f} req/s  p50 {point.p50_ms:7.2f} ms"
            f"  p99 {point.p99_ms:7.2f} ms  {point.cpu_us_per_event:7.0f} us CPU/call"
            f" ({until_idle:.0f} until idle)  errors {point.errors}",
            file=sys.stderr,
            flush=True,
        )


# --- markdown ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """A point and its server CPU per call until the server was idle again."""

    point: Point
    cpu_us_until_idle: float

    @property
    def key(self) -> tuple[str, int]:
        return self.point.scenario, self.point.concurrency


def rows(report: dict[str, Any]) -> list[Row]:
    return [
        Row(Point(**p), until_idle)
        for p, until_idle in zip(report["points"], report["cpu_us_until_idle"], strict=True)
    ]


def cpu_over_grpc(report: dict[str, Any]) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """(scenario, HTTP front end) -> (concurrency, its server CPU per call until idle over
    gRPC's) for each concurrency measured through both."""
    measured = rows(report)
    grpc = {row.key: row for row in measured if row.point.target == GRPC}
    ratios: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for row in measured:
        base = grpc.get(row.key)
        if row.point.target != GRPC and base is not None and base.cpu_us_until_idle > 0:
            ratios.setdefault((row.point.scenario, row.point.target), []).append(
                (row.point.concurrency, row.cpu_us_until_idle / base.cpu_us_until_idle)
            )
    return ratios


def _vs_grpc(row: Row, grpc: Row | None, value: Callable[[Row], float]) -> str:
    cell = f"{value(row):,.0f}"
    if row.point.target != GRPC and grpc is not None and value(grpc) > 0:
        cell += f" ({value(row) / value(grpc):.2f}x)"
    return cell


# Each column group of the table, one column per front end: its name and a row's cell
# (given gRPC's row at the same call and concurrency).
COLUMNS: tuple[tuple[str, Callable[[Row, Row | None], str]], ...] = (
    ("req/s", lambda row, grpc: f"{row.point.throughput:,.0f}"),
    (
        "CPU us/call",
        lambda row, grpc: _vs_grpc(row, grpc, lambda r: r.point.cpu_us_per_event),
    ),
    (
        "CPU us/call until idle",
        lambda row, grpc: _vs_grpc(row, grpc, lambda r: r.cpu_us_until_idle),
    ),
    ("p50 / p99 ms", lambda row, grpc: f"{row.point.p50_ms:.2f} / {row.point.p99_ms:.2f}"),
)


def section(report: dict[str, Any], heading: str) -> list[str]:
    """The side-by-side table under `heading` ("##", "### 10."): run_all's section and this
    module's own results section."""
    lines = [f"{heading} HTTP beside gRPC: unary Activate, Track and Decide, one trackd", ""]
    if not report["available"]:
        return [*lines, f"**Not measured**: {report['reason']}.", ""]
    measured = rows(report)
    by_key = {(*row.key, row.point.target): row for row in measured}
    lines += [
        "`bench/bench_http.py`: one trackd (durable SQLite outbox, file event sink, default"
        " settings but a 100M-event outbox cap) serving gRPC and `--http-listen`; each point"
        " sent through gRPC (ghz), Connect JSON (`POST /trackd.v1.TrackingService/<RPC>`,"
        " `application/json`) and Agent's REST API (`/v1/activate`, `/v1/track`,"
        " `/v1/decide`) in turn, both HTTP ones by bench/httpload (Go, like hey, one"
        " keep-alive HTTP/1.1 connection per caller, a new body per request),"
        f" {report['seconds']:g} s each, the server idle before each. CPU us/call: the"
        " server's process tree (all threads) from /proc during the point; until idle: from"
        " the point's start until the server is idle again, so delivering the point's events"
        " is in it however much of that the load put off; in brackets, over gRPC's. The load"
        " generators share the server's cores.",
        "",
        *[
            f"- {scenario.removeprefix('unary ')}: {payload}."
            for scenario, payload in {r.point.scenario: r.point.payload for r in measured}.items()
        ],
        "",
        "| call | concurrency | "
        + " | ".join(f"{protocol} {name}" for name, _ in COLUMNS for protocol in PROTOCOLS)
        + " | errors |",
        "|---|---:|" + "---:|" * (len(COLUMNS) * len(PROTOCOLS) + 1),
    ]
    for scenario, concurrency in dict.fromkeys(row.key for row in measured):
        grpc = by_key.get((scenario, concurrency, GRPC))
        cells = []
        for _, render in COLUMNS:
            for protocol in PROTOCOLS:
                found = by_key.get((scenario, concurrency, protocol))
                cells.append(render(found, grpc) if found else "n/a")
        errors = sum(r.point.errors for r in measured if r.key == (scenario, concurrency))
        lines.append(
            f"| {scenario.removeprefix('unary ')} | {concurrency} | "
            + " | ".join(cells)
            + f" | {errors} |"
        )
    lines.append("")
    notes = [
        f"- {r.point.target} {r.point.scenario} c={r.point.concurrency}: {note}"
        for r in measured
        for note in r.point.notes
    ]
    if notes:
        lines += ["Errors:", "", *notes, ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report = run(args)
    report_run(
        report,
        args.argv,
        section,
        "bench/bench_http.py",
        as_json=args.json,
        write=not (args.quick or args.no_write),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
