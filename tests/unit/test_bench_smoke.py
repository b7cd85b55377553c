"""The gRPC benchmark harness still runs end to end (a smoke run: no timing thresholds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_grpc_quick_reports_every_scenario_against_both_servers() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_grpc.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)

    assert result["machine"]["nproc"]
    points = result["points"]
    seen = {(p["scenario"], p["target"]) for p in points}
    for scenario in ("unary Activate", "unary Track", "stream"):
        for target in ("trackd", "bare"):
            assert (scenario, target) in seen
    for point in points:
        assert point["throughput"] > 0, point
        assert point["events"] > 0, point
        assert point["errors"] == 0, point
        if point["target"] == "trackd":
            assert point["ratio"] is not None and point["ratio"] > 0, point
