"""bench/bench_http.py measures Activate, Track and Decide through gRPC, Connect JSON and
Agent's /v1 of one real trackd, point by point (issue 16, Speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from typing import Any

import pytest

from bench import bench_http
from bench.harness import Point
from tests.support.go_tools import go_tool
from tests.unit.test_bench_smoke import ROOT, error_text


@pytest.mark.bench
def test_quick_run_answers_every_call_through_every_front_end_beside_grpc() -> None:
    go_tool("ghz")  # skips locally, fails in CI, when it is missing
    go_tool("go")  # builds bench/httpload
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_http", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["available"], report["reason"]
    points = report["points"]
    seen = {(p["scenario"], p["concurrency"], p["target"]) for p in points}
    assert seen == {
        (f"unary {method}", c, protocol)
        for method in ("Activate", "Track", "Decide")
        for c in (1, 16)
        for protocol in ("gRPC", "Connect JSON", "Agent /v1")
    }
    for point, until_idle in zip(points, report["cpu_us_until_idle"], strict=True):
        # httpload counts any answer but a 2xx as an error: every route took the request.
        assert point["errors"] == 0, error_text(point)
        assert point["ops"] > 0 and point["throughput"] > 0, point
        assert point["cpu_us_per_event"] > 0, point
        # Until idle spans the point and what follows it: never less.
        assert until_idle >= point["cpu_us_per_event"], (until_idle, point)
        if point["target"] != "gRPC":
            assert point["ratio"] is not None and point["ratio"] > 0, point

    text = "\n".join(bench_http.section(report, "##"))
    for call in ("Activate", "Track", "Decide"):
        for c in (1, 16):
            assert f"\n| {call} | {c} | " in text


def test_connect_body_is_the_rpc_request_in_proto_json_with_camel_case_names() -> None:
    body = json.loads(bench_http.connect_body(bench_http.call("Track", "user-{n}")))
    assert body["eventKey"] == "my_conversion"
    assert body["userId"] == "user-{n}"  # httpload numbers {n}
    assert "user_id" not in body


def test_a_run_without_its_load_generators_says_why_instead_of_a_table() -> None:
    report = {"available": False, "reason": "go not on PATH", "points": [], "seconds": 5.0}
    text = "\n".join(bench_http.section(report, "### 10."))
    assert "**Not measured**: go not on PATH." in text
    assert "| call |" not in text


def _point(scenario: str, concurrency: int, target: str) -> dict[str, Any]:
    return asdict(
        Point(
            scenario=scenario,
            target=target,
            loadgen="a load generator",
            concurrency=concurrency,
            payload="a payload",
            duration_s=5.0,
            ops=1000,
            events=1000,
            errors=0,
            throughput=200.0,
            p50_ms=1.0,
            p99_ms=2.0,
            cpu_pct=50.0,
            cpu_us_per_event=100.0,
            peak_rss_mb=40.0,
        )
    )


def test_the_http_front_ends_cpu_until_idle_is_compared_with_grpcs_at_each_concurrency() -> None:
    points, until_idle = [], []
    for c, grpc_us in ((1, 400.0), (16, 200.0)):
        for target, us in (("gRPC", grpc_us), ("Connect JSON", 300.0), ("Agent /v1", 100.0)):
            points.append(_point("unary Decide", c, target))
            until_idle.append(us)
    report = {"available": True, "points": points, "cpu_us_until_idle": until_idle, "seconds": 5}
    assert bench_http.cpu_over_grpc(report) == {
        ("unary Decide", "Connect JSON"): [(1, 0.75), (16, 1.5)],
        ("unary Decide", "Agent /v1"): [(1, 0.25), (16, 0.5)],
    }
    table = "\n".join(bench_http.section(report, "##"))
    assert (
        # req/s; CPU us/call during the point; until idle, each beside gRPC's.
        "| Decide | 16 | 200 | 200 | 200 | 100 | 100 (1.00x) | 100 (1.00x)"
        " | 200 | 300 (1.50x) | 100 (0.50x) |" in table
    )
