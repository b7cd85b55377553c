"""bench_scaling measures 1 vs 2 workers with the local store, which needs no Redis."""

from __future__ import annotations

import pytest

from bench import bench_scaling


@pytest.mark.bench
def test_one_and_two_workers_are_measured_with_the_local_store() -> None:
    report = bench_scaling.measure(quick=True, loadgen="python", stores=("local",))
    assert report["available"], report["reason"]
    points = report["points"]
    assert {(p["scenario"], p["target"]) for p in points} == {
        (f"scaling {method}", f"trackd x{workers}")
        for method in ("Activate", "Track")
        for workers in (1, 2)
    }
    for point in points:
        assert point["throughput"] > 0 and point["errors"] == 0, point
        assert point["ratio"] is not None, point
