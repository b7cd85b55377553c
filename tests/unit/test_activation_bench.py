"""The activation cache benchmark runs end to end (tiny counts; no thresholds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.bench


def test_activation_benchmark_quick_run_reports_every_figure() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_activation_cache", "--quick"],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    report = json.loads(out.stdout)
    assert set(report["bytes_per_entry"]) == {
        f"{n}_{shape}_user_ids" for n in (1000, 4000) for shape in ("short", "uuid")
    }
    assert report["ns_per_op_at_max"]["get_hit"] > 0
    assert report["expiry_at_max"]["retain_dropping_half"]["dropped"] == 2000
    assert set(report["put_latency_growing_then_churning_at_max"]) == {
        "one_shard",
        "default_shards",
    }
