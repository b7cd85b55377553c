"""bench/bench_agent.py --quick runs end to end: without Optimizely Agent (skipped, with the
reason printed), and beside Agent when its build is there (a full `make bench` builds it).
A smoke run: no timing thresholds, only structure and counts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import agent_peer, bench_agent
from bench.loadgen import find_ghz
from tests.unit.test_bench_smoke import ROOT, error_text

pytestmark = pytest.mark.bench


def quick_run(*extra: str) -> tuple[dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_agent", "--quick", "--json", *extra],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), done.stderr


def assert_measured(report: dict[str, Any], target: str) -> None:
    points = [p for p in report["points"] if p["target"] == target]
    expected = {(f"unary {method}", c) for method in ("Activate", "Track") for c in (1, 16)}
    if find_ghz() is not None:  # trackd's Decide is sent by ghz only
        expected.add(("unary Decide", bench_agent.DECIDE_CONCURRENCY))
    assert {(p["scenario"], p["concurrency"]) for p in points} == expected
    for point in points:
        assert point["ops"] > 0 and point["throughput"] > 0, point
        assert point["errors"] == 0, error_text(point)
        assert point["cpu_us_per_event"] > 0, point
        assert point["p99_ms"] >= point["p50_ms"] > 0, point


def test_without_agent_it_says_why_and_still_measures_trackd(tmp_path: Path) -> None:
    report, stderr = quick_run("--agent-archive", str(tmp_path / "absent.tar.gz"))
    assert "Optimizely Agent skipped: not built" in stderr
    assert report["agent"]["available"] is False and report["agent"]["reason"]
    assert {p["target"] for p in report["points"]} == {"trackd"}
    assert_measured(report, "trackd")
    # trackd's outbox delivers every acknowledged event to the receiver: one per Activate or
    # Track, and at least one per Decide of every flag (a decision event per flag decided).
    for row in report["delivery"]:
        assert row["cpu_us_per_call_until_idle"] > 0, row
        if find_ghz() is None:  # the Python workers' users are not counted
            assert row["delivered"] is None, row
        elif row["scenario"] == "unary Decide":
            assert row["delivered"] >= row["acknowledged"] > 0, row
        else:
            assert row["delivered"] == row["acknowledged"] > 0, row
    text = "\n".join(bench_agent.section(report, "### 9."))
    assert "**Optimizely Agent skipped**: not built" in text
    assert "| Activate | 16 | n/a |" in text


def test_beside_a_built_agent_both_are_measured_and_their_events_counted() -> None:
    binary, reason = agent_peer.agent_binary(agent_peer.ARCHIVE, build=False)
    if binary is None:
        pytest.skip(f"Optimizely Agent: {reason}")
    report, _ = quick_run()
    assert report["agent"]["available"] is True
    assert_measured(report, "agent")
    assert_measured(report, "trackd")
    for row in report["delivery"]:
        if row["scenario"] == "unary Decide":
            assert row["delivered"] > 0, row  # a decision event per flag: many per call
        elif row["target"] == "trackd":
            if find_ghz() is not None:  # else the Python workers' users are not counted
                assert row["delivered"] == row["acknowledged"] > 0, row
        else:
            # Agent may drop events under load (its queue is bounded), never invent them.
            assert 0 < row["delivered"] <= row["acknowledged"], row
    text = "\n".join(bench_agent.section(report, "### 9."))
    assert "skipped" not in text and "n/a" not in text


def test_the_receiver_counts_each_visitors_events_under_its_user_prefix() -> None:
    peer = agent_peer.Peer({})
    try:
        batch = {
            "visitors": [
                {"visitor_id": "run-Activate-1-agent-7", "snapshots": [{"events": [{}]}]},
                {"visitor_id": "run-Activate-1-agent-8", "snapshots": [{"events": [{}, {}]}]},
                {"visitor_id": "other-1", "snapshots": [{"decisions": [{}], "events": [{}]}]},
            ]
        }
        peer.count("agent", batch)
        assert peer.delivered_for("agent", "run-Activate-1-agent") == 3
        assert peer.delivered_for("agent", "other") == 1
        assert peer.delivered_for("trackd", "other") == 0
        assert peer.total("agent") == 4
    finally:
        peer.server_close()


def test_an_archive_that_does_not_build_is_skipped_with_the_reason(tmp_path: Path) -> None:
    archive = tmp_path / "not-agent.tar.gz"
    archive.write_bytes(b"not a tar archive")
    binary, reason = agent_peer.agent_binary(archive, build=True)
    assert binary is None
    assert reason.startswith(("build failed", "go not on PATH")), reason
    # Nothing half-built is left for a later run to take for a finished build.
    assert not (agent_peer.BUILD / "not-agent").exists()
    assert not list(agent_peer.BUILD.glob("building-*"))


def test_an_agent_that_exits_at_start_is_skipped_and_trackd_still_measured(
    tmp_path: Path,
) -> None:
    # A "build" of an archive whose Agent exits at once: the bench goes on without it.
    build = agent_peer.BUILD / "exits-at-start"
    build.mkdir(parents=True, exist_ok=True)
    try:
        binary = build / "optimizely"
        binary.write_text("#!/bin/sh\necho 'config unreadable'\nexit 1\n")
        binary.chmod(0o755)
        report, stderr = quick_run("--agent-archive", str(tmp_path / "exits-at-start.tar.gz"))
    finally:
        shutil.rmtree(build)
    assert "Optimizely Agent skipped: agent exited early: config unreadable" in stderr
    assert report["agent"]["available"] is False
    assert {p["target"] for p in report["points"]} == {"trackd"}
    assert_measured(report, "trackd")
