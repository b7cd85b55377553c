"""Throughput of the acknowledgement path: records appended and committed, events/s.

    .venv/bin/python -m tests.unit.test_outbox_bench            # full run, prints JSON
    .venv/bin/python -m tests.unit.test_outbox_bench --quick    # tiny counts (the test)

`append_only` commits pre-built records, cycling through 16 batches (what the outbox itself
costs; repeated users make the results consumer's inserts cheap); `build_and_append` also
creates each conversion record (attributes, tags, uuid) for a new user, as Track does, so
the results consumer does its full work. Producers are concurrent coroutines, each
awaiting its own appends, as concurrent streams are. Results counting runs in the writer
thread during the measurement (it is part of the cost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from trackd.datafile import parse_datafile
from trackd.events import records
from trackd.events.outbox import Outbox, Synchronous
from trackd.events.tags import parse_tags

DATAFILE = Path(__file__).parents[1] / "data" / "datafile.json"


async def _run(
    batch: int, batches: int, producers: int, synchronous: Synchronous, build: bool
) -> dict[str, Any]:
    config = parse_datafile(DATAFILE.read_text())
    event = config.events_by_key["my_conversion"]
    attributes = {"device": "iPhone", "ad_source": "email"}
    tags = parse_tags({"revenue": 4200, "category": "shoes"})
    attributions = (("40001", "42001"),)

    def make(i: int) -> list[records.Record]:
        return [
            records.conversion(
                config, event, f"user-{i}-{j}", attributes, tags, attributions, now_ms=1
            )
            for j in range(batch)
        ]

    prebuilt = [] if build else [make(i) for i in range(16)]
    with tempfile.TemporaryDirectory() as tmp:
        async with Outbox(
            Path(tmp) / "outbox.sqlite3", max_events=10**9, synchronous=synchronous
        ) as outbox:
            queue = list(range(batches))

            async def producer() -> None:
                while queue:
                    i = queue.pop()
                    await outbox.append(make(i) if build else prebuilt[i % 16])

            commits = outbox.commits
            started = time.perf_counter()
            await asyncio.gather(*(producer() for _ in range(producers)))
            elapsed = time.perf_counter() - started
            commits = outbox.commits - commits
            # Results counting caught up, then the time including it.
            await outbox.results(config, config.experiments_by_key["ab_running"])
            with_results = time.perf_counter() - started
    events = batch * batches
    return {
        "events_per_s": round(events / elapsed),
        "events_per_s_incl_results_catch_up": round(events / with_results),
        "events": events,
        "batch": batch,
        "producers": producers,
        "synchronous": synchronous,
        "commits": commits,
    }


def run(quick: bool) -> dict[str, Any]:
    """`burst`: 90,000 events, under the results lag bound, so results are counted after
    the burst (the pure acknowledgement path); `sustained`: 1,000,000 events, results
    counted alongside (the steady state)."""
    sizes = {"burst": 4 if quick else 180, "sustained": 8 if quick else 2000}
    report: dict[str, Any] = {}
    for scenario, batches in sizes.items():
        for build in (False, True):
            for synchronous in ("FULL", "NORMAL"):
                for producers in (1, 8):
                    kind = "build_and_append" if build else "append_only"
                    name = f"{scenario}_{kind}_{synchronous}_{producers}p"
                    report[name] = asyncio.run(_run(500, batches, producers, synchronous, build))
    return report


@pytest.mark.bench
def test_outbox_benchmark_quick_run_reports_every_figure() -> None:
    report = run(quick=True)
    assert len(report) == 16
    assert all(figures["events_per_s"] > 0 for figures in report.values())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    json.dump(run(parser.parse_args().quick), sys.stdout, indent=1)
    print()
