"""How bench_decide makes one figure of a pass's rounds (a unit, no benchmark run)."""

from __future__ import annotations

from bench import bench_decide


def test_a_pass_reports_its_median_round_whole_with_every_round_beside_it() -> None:
    rounds = [
        {"daemon_cpu_us_per_user": cpu, "calls_per_s": calls}
        for cpu, calls in ((900.0, 1), (700.0, 2), (800.0, 3), (1200.0, 4))
    ]
    row = bench_decide._median_round(rounds)
    # The lower middle of an even count, and the figures of that same round.
    assert row["daemon_cpu_us_per_user"] == 800.0 and row["calls_per_s"] == 3
    assert row["daemon_cpu_us_per_user_rounds"] == [900.0, 700.0, 800.0, 1200.0]
