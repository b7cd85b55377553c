"""`make bench` holds trackd's server CPU per unary call against a bare grpc.aio server's
(issue 17 item 3), both the stock one and one on trackd's own loop."""

from __future__ import annotations

from bench import run_all
from bench.harness import Point


def _unary(target: str, concurrency: int, cpu_us: float) -> Point:
    return Point(
        scenario="unary Track",
        target=target,
        loadgen="ghz",
        concurrency=concurrency,
        payload="",
        duration_s=5.0,
        ops=1,
        events=1,
        errors=0,
        throughput=1.0,
        p50_ms=1.0,
        p99_ms=1.0,
        cpu_pct=1.0,
        cpu_us_per_event=cpu_us,
        peak_rss_mb=1.0,
    )


def test_the_headline_holds_trackds_cpu_per_unary_call_against_each_bare_server() -> None:
    """Issue 17 item 3: at most 1.6x the bare server's CPU per call, at every concurrency,
    against the stock bare server and the one on trackd's loop."""
    points = [
        _unary("trackd", 1, 400.0),
        _unary("bare", 1, 300.0),
        _unary("bare+uvloop", 1, 200.0),
        _unary("trackd", 16, 450.0),
        _unary("bare", 16, 300.0),
        _unary("bare+uvloop", 16, 250.0),
    ]
    rows = run_all.headline({"grpc": {"points": [vars(p) for p in points]}})
    cpu = {r[0]: r[1:] for r in rows if "server CPU per call" in r[0]}
    assert cpu == {
        "unary Track: trackd/bare server CPU per call (c=1..64)": (
            "1.33 .. 1.50",
            "<= 1.6 (--outbox-sync full)",
            "yes",
        ),
        "unary Track: trackd/bare+uvloop server CPU per call (c=1..64)": (
            "1.80 .. 2.00",
            "<= 1.6 (--outbox-sync full)",
            "**no**",
        ),
    }
