"""The delivered-Decide benchmark runs end to end (tiny counts; no timing thresholds): the SDK
with each of its event processors and the daemon, every event each sent counted by the one
receiver, and the rows a reader gets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import bench_decide_delivered, run_all

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.bench


def test_both_sides_deliver_every_event_to_the_receiver_and_are_compared() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_decide_delivered", "--quick", "--json"],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(out.stdout)
    passes = report["passes"]
    assert list(passes) == ["forwarding", "batch", "daemon"]
    for name, figures in passes.items():
        # bench_decide's datafile sends a decision event for each of its 50 flags.
        assert figures["events"] == 50 * figures["users"], (name, figures)
        assert figures["delivered"] == figures["events"], (name, figures)
        assert figures["cpu_us_per_user"] > 0, (name, figures)
    daemon = passes["daemon"]["cpu_us_per_user"]
    # A quick run's daemon runs two passes of new users: both delivered, the median one's CPU.
    assert passes["daemon"]["rounds"] == 2
    assert daemon in passes["daemon"]["cpu_us_per_user_rounds"]
    assert len(passes["daemon"]["cpu_us_per_user_rounds"]) == 2
    assert passes["daemon"]["over_daemon"] == 1.0
    assert passes["batch"]["over_daemon"] == round(passes["batch"]["cpu_us_per_user"] / daemon, 1)

    table = bench_decide_delivered.table(report)
    assert len(table) == 2 + 3
    assert table[3].startswith("| SDK decide_all(), BatchEventProcessor")
    rows = run_all.decide_delivered_rows(report)
    assert [row[0] for row in rows] == [
        "Decide, events delivered over HTTP on both sides: SDK (forwarding processor) CPU per"
        " user / daemon's",
        "Decide, events delivered over HTTP on both sides: SDK (batch processor) CPU per user"
        " / daemon's",
    ]
    assert all(row[3] == "" for row in rows)  # context, not a goal
