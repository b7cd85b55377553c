"""The benchmarks are one package sharing one harness, and the fast suite leaves them out."""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import bench
from bench import bench_grpc, bench_startup, bench_threads, harness

ROOT = Path(__file__).resolve().parents[2]


def test_importing_every_benchmark_leaves_sys_path_alone() -> None:
    before = list(sys.path)
    names = [module.name for module in pkgutil.iter_modules(bench.__path__)]
    assert {"harness", "loadgen", "run_all", "bench_grpc", "bench_startup"} <= set(names)
    for name in names:
        importlib.import_module(f"bench.{name}")
    assert sys.path == before


def test_the_benchmarks_read_proc_and_start_servers_through_the_harness() -> None:
    assert bench_startup.cpu_seconds is harness.cpu_seconds
    assert bench_startup.peak_rss_mb is harness.peak_rss_mb
    assert bench_threads.stat_cpu_seconds is harness.stat_cpu_seconds
    assert bench_grpc.start_trackd is harness.start_trackd


@pytest.mark.slow
def test_the_fast_selection_leaves_out_the_benchmark_smoke_runs() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not slow and not bench",
            "tests/unit/test_bench_smoke.py",
            "tests/unit/test_decision_bench.py",
            "tests/unit/test_decide_bench.py",
            "tests/unit/test_bench_smoke_datafile.py",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    collected = done.stdout
    assert "test_bench_smoke_datafile.py::" in collected  # a unit test of the generator: fast
    assert "test_bench_smoke.py::" not in collected
    assert "test_decision_bench.py::" not in collected
    assert "test_decide_bench.py::" not in collected
    assert "3 deselected" in collected


def test_a_results_section_is_appended_after_a_blank_line_under_one_title(tmp_path: Path) -> None:
    now = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
    path = harness.append_results(tmp_path, now, "## first")
    assert path == tmp_path / "2026-12-07.md"
    path.write_text(path.read_text() + "hand-written, no final newline")
    harness.append_results(tmp_path, now, "## second")
    assert path.read_text() == (
        "# Benchmark results, 2026-12-07\n\n## first\nhand-written, no final newline\n\n## second\n"
    )
