"""The decision benchmark runs end to end (tiny counts; no thresholds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.bench


def test_decision_benchmark_quick_run_reports_every_figure() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_decisions", "--quick", "--json"],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    report = json.loads(out.stdout)
    assert set(report["us_per_decision"]) == {"trackd_decide", "sdk_get_variation", "sdk_activate"}
    assert all(figure > 0 for figure in report["us_per_decision"].values())
    assert set(report["sdk_over_trackd"]) == {"get_variation", "activate"}
