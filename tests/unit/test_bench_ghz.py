"""ghz's unary points count every error it reports: the end of a timed run cuts no call off,
so a clean run against the bare server and trackd reports none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.go_tools import go_tool
from tests.unit.test_bench_smoke import ROOT, error_text

pytestmark = pytest.mark.bench


def test_timed_ghz_runs_end_without_cut_off_calls(tmp_path: Path) -> None:
    go_tool("ghz")  # skips locally, fails in CI, when it is missing
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_grpc",
            "--quick",
            "--json",
            "--no-write",
            "--only",
            "unary",
            "--loadgen",
            "ghz",
            # Many callers, short runs: with ghz's default stop (close the connection) most
            # such runs ended with calls failed by ghz itself.
            "--concurrency",
            "16",
            "64",
            "--duration",
            "0.3",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    points = json.loads(done.stdout)["points"]
    assert {point["target"] for point in points} == {"trackd", "bare"}
    for point in points:
        assert point["loadgen"].startswith("ghz"), point
        assert point["ops"] > 0, point
        assert point["errors"] == 0, error_text(point)
