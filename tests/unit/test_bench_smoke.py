"""`make bench` still runs end to end: bench/run_all.py --quick (a smoke run: no timing
thresholds, only structure and positive figures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.bench


def error_text(point: dict[str, Any]) -> str:
    """A failed point as a reader needs it: where, how many, and the errors' own words
    (ghz's error distribution, in the point's notes)."""
    notes = "\n  ".join(point["notes"]) or "(no error text recorded)"
    return (
        f"{point['scenario']} against {point['target']} at concurrency {point['concurrency']}:"
        f" {point['errors']} errors ({point['loadgen']}):\n  {notes}"
    )


def test_run_all_quick_reports_every_scenario_and_writes_one_section_and_a_plot(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run_all",
            "--quick",
            "--json",
            "--results-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["machine"]["nproc"]
    reports = result["reports"]
    assert set(reports) == {
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
    }
    for name, report in reports.items():
        assert "error" not in report, (name, report)

    # 1-2: every scenario against both servers, all answered.
    points = reports["grpc"]["points"]
    seen = {(p["scenario"], p["target"]) for p in points}
    for scenario in ("unary Activate", "unary Track", "stream", "stream, one stream of new users"):
        for target in ("trackd", "bare"):
            assert (scenario, target) in seen
    for point in points:
        assert point["throughput"] > 0, point
        assert point["events"] > 0, point
        assert point["errors"] == 0, error_text(point)
        assert point["peak_rss_mb"] > 0, point
        if point["target"] == "trackd":
            assert point["ratio"] is not None and point["ratio"] > 0, point

    # 3: trackd and the SDK on the same decisions.
    decisions = reports["decisions"]
    assert all(v > 0 for v in decisions["decisions_per_s"].values())
    assert all(v["p99"] >= v["p50"] > 0 for v in decisions["latency_us"].values())

    # 4: memory per entry at both sizes, latency while everything expires.
    activation = reports["activation"]
    assert all(row["store_tracemalloc"] > 0 for row in activation["bytes_per_entry"].values())
    assert activation["expiry_at_max"]["get_put_while_all_expire"]["p50_us"] > 0

    # 5: the example and two generated datafiles, each started and reloaded.
    rows = reports["startup"]["rows"]
    assert rows[0]["datafile"] == "bundled example"
    assert len(rows) == 3
    assert rows[-1]["bytes"] >= 1 << 20
    for row in rows:
        assert row["first_activate_s"] >= row["started_s"] > 0, row
        assert row["peak_rss_mb"] > 0, row
        assert row["parse_datafile_s"] > 0, row

    # 6: measured when redis-server is there, else said so; CI installs it, so there it must
    # be measured.
    scaling = reports["scaling"]
    if os.environ.get("CI") == "true":
        assert scaling["available"], scaling["reason"]
    if scaling["available"]:
        assert {p["target"] for p in scaling["points"]} == {"trackd x1", "trackd x2"}
        assert all(p["throughput"] > 0 for p in scaling["points"])
    else:
        assert scaling["reason"] and scaling["points"] == []

    # 7: both ways of delivering, every event delivered, in batches of 100.
    delivery = reports["delivery"]["rows"]
    assert {row["round_batches"] for row in delivery} == {1, 16}
    for row in delivery:
        assert row["events_per_s"] > 0 and row["cpu_us_per_event"] > 0, row
        assert row["batches"] == -(-row["events"] // 100), row
    http = reports["delivery"]["http"]
    assert [row["connections"] for row in http] == [1, 4, 8]
    for row in http:
        assert row["events_per_s"] > 0 and row["batches"] == -(-row["events"] // 100), row

    # 8: Decide in-process, both engines agreeing on every flag for every user.
    decide = reports["decide"]
    assert decide["compared"] == decide["flags"] * decide["users"] > 0
    assert decide["disagreements"] == 0, decide["disagreement_examples"]
    assert decide["trackd"]["cpu_us_per_flag"] > 0 and decide["sdk"]["cpu_us_per_flag"] > 0

    # 9: trackd measured beside Optimizely Agent, or alone when Agent is not built (--quick
    # never builds it; tests/unit/test_bench_agent.py covers both).
    agent = reports["agent"]
    assert agent["agent"]["available"] or agent["agent"]["reason"]
    assert {p["target"] for p in agent["points"] if p["ops"] > 0} >= {"trackd"}

    # 10: every call through gRPC, Connect JSON and Agent /v1 (tests/unit/test_bench_http.py
    # checks each point; ghz and Go are there, as for 1-2).
    http_points = reports["http"]["points"]
    assert {p["target"] for p in http_points} == {"gRPC", "Connect JSON", "Agent /v1"}
    for point in http_points:
        assert point["errors"] == 0, error_text(point)

    # 11: both durability modes measured on the same calls, Track beside the bare servers.
    for scenario, by_mode in reports["outbox_sync"]["figures"].items():
        modes = {"full", "normal"} | ({"bare", "bare+uvloop"} if "Track" in scenario else set())
        assert set(by_mode) == modes, scenario
        assert all(mode["calls_per_s"] > 0 for mode in by_mode.values()), scenario

    # 12: the SDK both ways and the daemon, every event each sent reaching the receiver.
    delivered = reports["decide_delivered"]["passes"]
    assert set(delivered) == {"forwarding", "batch", "daemon"}
    for name, figures in delivered.items():
        assert figures["delivered"] == figures["events"] > 0, (name, figures)

    # One dated section, a plot referenced from it.
    markdowns = list(tmp_path.glob("*.md"))
    plots = list(tmp_path.glob("*.png"))
    assert len(markdowns) == 1 and len(plots) == 1
    text = markdowns[0].read_text()
    assert text.count("## All scenarios") == 1
    assert f"]({plots[0].name})" in text
    for heading in (
        "### 1-2.",
        "### 3.",
        "### 4.",
        "### 5.",
        "### 6.",
        "### 7.",
        "### 8.",
        "### 9.",
        "### 10.",
        "### 11.",
        "### 12.",
    ):
        assert heading in text
    if not scaling["available"]:
        assert "not available in this build" in text
    assert plots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
