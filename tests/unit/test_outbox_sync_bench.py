"""The --outbox-sync benchmark runs end to end (tiny counts; no timing thresholds): both
modes measured for every call, without errors, and the table a reader gets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import bench_outbox_sync

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
    for scenario, by_mode in report["figures"].items():
        assert set(by_mode) == {"full", "normal"}, scenario
        for figures in by_mode.values():
            assert figures["calls_per_s"] > 0 and figures["cpu_us_per_call"] > 0, figures
            assert figures.get("errors", 0) == 0, figures
    decide = report["figures"]["Decide 50 flags, new users"]
    assert decide["full"]["impressions"] == decide["normal"]["impressions"] > 0

    table = bench_outbox_sync.table(report)
    assert table[0].startswith("| call, concurrency | full calls/s | normal calls/s")
    assert len(table) == 2 + len(report["figures"])
