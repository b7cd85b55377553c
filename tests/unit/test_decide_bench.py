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
    for engine in ("trackd", "sdk"):
        figures = report[engine]
        assert figures["cpu_us_per_user"] > figures["cpu_us_per_flag"] > 0, figures
        assert figures["wall_p99_us"] >= figures["wall_p50_us"] > 0, figures
    assert report["sdk_over_trackd_cpu"] > 0

    text = "\n".join(bench_decide.section(report, "### 8."))
    assert text.startswith("### 8. Decide, in-process")
    assert "**0 disagreements**" in text
    assert "when the Decide RPC lands" in text
    assert "TODO" not in text
