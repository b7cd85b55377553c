"""The Decide benchmark runs end to end (tiny counts; no timing thresholds): both engines on
the same users, every decision compared, the figures and the section a reader gets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import bench_decide

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.bench


def test_decide_benchmark_quick_run_agrees_with_the_sdk_and_reports_every_figure() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_decide", "--quick", "--json"],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    report = json.loads(out.stdout)
    assert report["flags"] == 50
    assert report["compared"] == 50 * report["users"] > 0
    assert report["disagreements"] == 0, report["disagreement_examples"]
    for engine in ("trackd", "sdk", "sdk_events"):
        figures = report[engine]
        assert figures["cpu_us_per_user"] > figures["cpu_us_per_flag"] > 0, figures
        assert figures["wall_p99_us"] >= figures["wall_p50_us"] > 0, figures
    assert report["sdk_over_trackd_cpu"] > 0

    text = "\n".join(bench_decide.section(report, "### 8."))
    assert text.startswith("### 8. Decide, in-process")
    assert "**0 disagreements**" in text
    assert "Decide over gRPC: one call for every flag" in text
    passes = report["grpc"]
    assert list(passes) == [
        bench_decide.NEW_USERS,
        bench_decide.SAME_USERS,
        bench_decide.QUIET_PASS,
        bench_decide.BARE_PASS,
        bench_decide.BARE_UVLOOP_PASS,
    ]
    for name, row in passes.items():
        assert row["calls"] == report["grpc_users"] == bench_decide.QUICK_GRPC_USERS, (name, row)
        assert row["daemon_cpu_us_per_user"] > 0 and row["calls_per_s"] > 0, (name, row)
        # A quick run is one round: its figure is that round's.
        assert row["daemon_cpu_us_per_user_rounds"] == [row["daemon_cpu_us_per_user"]]
    assert set(report["sdk_over_daemon_cpu"]) == set(passes) - set(
        bench_decide.BARE_PASSES.values()
    )
    assert all(ratio > 0 for ratio in report["sdk_over_daemon_cpu"].values())
    # The SDK with events sends one for each feature test and, with sendFlagDecisions, each
    # rollout decision: one per flag here.
    assert report["sdk_events"]["events_per_user"] == 50
    assert report["sdk_events"]["cpu_us_per_user"] > report["sdk"]["cpu_us_per_user"]
    # Every flag of a new user is decided afresh: its feature tests send their events.
    assert passes["new users (decision events)"]["impressions"] > 0
    assert passes["DISABLE_DECISION_EVENT"]["impressions"] == 0
    assert "TODO" not in text
