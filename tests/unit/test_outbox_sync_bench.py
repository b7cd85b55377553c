"""The --outbox-sync benchmark runs end to end (tiny counts; no timing thresholds): both
modes measured for every call, without errors, and the table a reader gets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import bench_outbox_sync, run_all

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.bench


def test_outbox_sync_benchmark_quick_run_measures_both_modes_side_by_side() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_outbox_sync", "--quick", "--json"],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    report = json.loads(out.stdout)
    assert set(report["figures"]) == {"Track, 16", "Decide 50 flags, new users"}
    track = report["figures"]["Track, 16"]
    assert set(track) == {"full", "normal", "bare", "bare+uvloop"}
    decide = report["figures"]["Decide 50 flags, new users"]
    assert set(decide) == {"full", "normal"}
    for by_mode in report["figures"].values():
        for figures in by_mode.values():
            assert figures["calls_per_s"] > 0 and figures["cpu_us_per_call"] > 0, figures
            assert figures.get("errors", 0) == 0, figures
            # Where the CPU ran: the loop always works; the split sums to about the total
            # (read from /proc around the same point, so not to the microsecond).
            assert figures["loop_us"] > 0, figures
            split = figures["loop_us"] + figures["threads_us"] + figures["children_us"]
            assert 0.5 * figures["cpu_us_per_call"] <= split <= 2 * figures["cpu_us_per_call"]
    # trackd's event encoder is a child process; the bare servers have none.
    assert decide["full"]["children_us"] > 0 and track["bare"]["children_us"] == 0
    assert decide["full"]["impressions"] == decide["normal"]["impressions"] > 0

    table = bench_outbox_sync.table(report)
    assert table[0].startswith("| call, concurrency | full calls/s | normal calls/s")
    assert len(table) == 2 + len(report["figures"])
    track_row, decide_row = (
        next(line for line in table if line.startswith(f"| {scenario} |"))
        for scenario in ("Track, 16", "Decide 50 flags, new users")
    )
    full_over_bare = track["full"]["cpu_us_per_call"] / track["bare"]["cpu_us_per_call"]
    assert f"| {full_over_bare:.2f} |" in track_row
    assert decide_row.endswith("| n/a | n/a | n/a | n/a | n/a | n/a |")
    splits = bench_outbox_sync.split_table(report)
    assert len(splits) == 2 + 4 + 2  # Track: two modes and two bare servers; Decide: two modes

    rows = {row[0]: row[1:] for row in run_all.outbox_sync_rows(report)}
    key = "unary Track, --outbox-sync normal: trackd/bare server CPU per call (section 11, c=1..64)"
    normal_over_bare = track["normal"]["cpu_us_per_call"] / track["bare"]["cpu_us_per_call"]
    assert rows[key][0] == f"{normal_over_bare:.2f} .. {normal_over_bare:.2f}"
    assert rows[key][1] == "<= 1.3"
    assert len(rows) == 4
