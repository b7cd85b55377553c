"""Delivery: how fast the dispatcher drains a backlog, one batch at a time vs in rounds.

An outbox is filled with TrackStream-shaped rows (500 events each) or unary calls' events
(one call at a time: a row each; 64 concurrent calls at a time: calls committed together
share a row), then a Dispatcher with the file sink and the encoder process (as `trackd serve`
runs it) delivers everything, side by side in one run:
  - `round_batches=1`   one batch per round (trackd before 2026-12-05)
  - `round_batches=16`  trackd's default: one read, one encoder call, one write and fsync,
                        one acknowledgement commit per round
Then TrackStream rows go to a local HTTP endpoint (tests.support.receiver) that answers each
POST after HTTP_RTT_S, as logx would a round trip away, with 1, 4 and 8 connections: one
POST at a time (trackd before 2026-12-05) against a round's batches in parallel.
Reported: events delivered per second and the daemon process's CPU per event (user + sys,
all its threads; not the encoder process's, which runs at niceness 10), median of
`--repeats` alternating runs.

    .venv/bin/python -m bench.bench_delivery [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import DATAFILE
from tests.support.receiver import Receiver, Reply
from trackd.datafile import parse_datafile
from trackd.events import records
from trackd.events.dispatcher import ROUND_BATCHES, Dispatcher
from trackd.events.outbox import Outbox
from trackd.events.sinks import Sink
from trackd.events.sinks.file import FileSink
from trackd.events.sinks.http import HttpSink
from trackd.events.tags import parse_tags

DEVICES = ("iPhone", "Android", "iPad")
AD_SOURCES = ("google", "facebook", "newsletter")


# The endpoint's answer time in the HTTP part: about a round trip to logx.optimizely.com
# from a nearby region. 1 connection is how trackd sent before 2026-12-05; 4 its default.
HTTP_RTT_S = 0.02
HTTP_CONNECTIONS = (1, 4, 8)


def _cpu() -> float:
    """This process's CPU seconds, user + sys, all threads (not the encoder process)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


async def fill(outbox: Outbox, events: int, per_row: int, callers: int = 1) -> None:
    """`events` in rows of `per_row` (a stream batch's columns) or, with `per_row` 1, as
    unary calls' records from `callers` concurrent calls at a time (calls committed
    together share a row, as under load)."""
    config = parse_datafile(DATAFILE.read_text())
    event = config.events_by_key["my_conversion"]
    tags = parse_tags({"revenue": 1299, "category": "shoes"})
    attributes = [{"device": d, "ad_source": a} for d in DEVICES for a in AD_SOURCES]
    attributed = (("40001", "42001"),)
    appends = []
    for start in range(0, events, per_row):
        batch = records.ConversionColumns(config, int(time.time() * 1000))
        for i in range(start, min(events, start + per_row)):
            batch.add(event, f"u-{i}", attributes[i % 9], tags, attributed if i % 2 else ())
        # A TrackStream batch (columns); a unary Track's record.
        appends.append(batch if per_row > 1 else batch.records())
    for start in range(0, len(appends), callers):
        await asyncio.gather(*(outbox.append(a) for a in appends[start : start + callers]))


async def drain(
    events: int,
    per_row: int,
    callers: int,
    round_batches: int,
    http: tuple[int, float] | None = None,
) -> dict[str, float]:
    """Delivers to the file sink, or with `http` = (connections, seconds) to a local HTTP
    endpoint that answers each POST after that many seconds (a round trip to logx)."""
    async with contextlib.AsyncExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trackd-delivery-")))
        outbox = await stack.enter_async_context(
            Outbox(workdir / "outbox.sqlite3", max_events=10**9)
        )
        await fill(outbox, events, per_row, callers)
        rows = len(await outbox.read(0, events))
        sink: Sink
        receiver: Receiver | None = None
        if http is None:
            sink = FileSink(workdir / "events.jsonl")
        else:
            connections, delay = http
            receiver = await stack.enter_async_context(Receiver(default=Reply(200, delay=delay)))
            sink = HttpSink(receiver.url, max_connections=connections)
        dispatcher = Dispatcher(
            outbox,
            sink,
            batch_size=100,
            flush_interval=0.01,
            encoder_process=True,
            round_batches=round_batches,
        )
        # Results are counted as rows are committed: let that finish before measuring.
        config = parse_datafile(DATAFILE.read_text())
        await outbox.results(config, config.experiments_by_key["ab_running"])
        cpu_before = _cpu()
        started = time.perf_counter()
        dispatcher.start()
        while outbox.undelivered > 0:  # noqa: ASYNC110 - a counter, polled: no event for it
            await asyncio.sleep(0.005)
        wall = time.perf_counter() - started
        cpu_after = _cpu()
        await dispatcher.aclose()
        if receiver is None:
            lines = (workdir / "events.jsonl").read_text().count("\n")
        else:
            lines = len(receiver.received)
    return {
        "events_per_s": events / wall,
        "cpu_us_per_event": 1e6 * (cpu_after - cpu_before) / events,
        "wall_s": wall,
        "lines": lines,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts (smoke run)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args(argv)
    repeats = 1 if options.quick else options.repeats
    unary = 500 if options.quick else 20_000
    shapes = {
        "TrackStream rows (500 events)": (500, 2_000 if options.quick else 200_000, 1),
        "unary calls, one at a time": (1, unary, 1),
        "unary calls, 64 concurrent": (1, unary, 64),
    }
    rows = []
    for shape, (per_row, events, callers) in shapes.items():
        samples: dict[int, list[dict[str, float]]] = {1: [], ROUND_BATCHES: []}
        for _ in range(repeats):  # alternating, so drift hits both alike
            for round_batches in samples:
                samples[round_batches].append(
                    asyncio.run(drain(events, per_row, callers, round_batches))
                )
        for round_batches, runs in samples.items():
            rows.append(
                {
                    "shape": shape,
                    "events": events,
                    "round_batches": round_batches,
                    "events_per_s": statistics.median(r["events_per_s"] for r in runs),
                    "cpu_us_per_event": statistics.median(r["cpu_us_per_event"] for r in runs),
                    "batches": runs[0]["lines"],
                    "rows": runs[0]["rows"],
                }
            )
    # To an HTTP endpoint a round trip away: one POST at a time (trackd before 2026-12-05)
    # against the round's batches in parallel over the pool's connections.
    http_rows = []
    http_events = 2_000 if options.quick else 20_000
    http_samples: dict[int, list[dict[str, float]]] = {c: [] for c in HTTP_CONNECTIONS}
    for _ in range(repeats):
        for connections in http_samples:
            http_samples[connections].append(
                asyncio.run(
                    drain(http_events, 500, 1, ROUND_BATCHES, http=(connections, HTTP_RTT_S))
                )
            )
    for connections, runs in http_samples.items():
        http_rows.append(
            {
                "connections": connections,
                "rtt_ms": HTTP_RTT_S * 1000,
                "events": http_events,
                "events_per_s": statistics.median(r["events_per_s"] for r in runs),
                "cpu_us_per_event": statistics.median(r["cpu_us_per_event"] for r in runs),
                "batches": runs[0]["lines"],
            }
        )
    report = {"repeats": repeats, "batch_size": 100, "rows": rows, "http": http_rows}
    if options.json:
        print(json.dumps(report, indent=2))
    else:
        for row in rows:
            print(
                f"{row['shape']:32} {row['rows']:7,} rows, rounds of {row['round_batches']:2}: "
                f"{row['events_per_s']:10,.0f} events/s"
                f"  {row['cpu_us_per_event']:6.2f} us CPU/event",
                file=sys.stderr,
            )
        for row in http_rows:
            print(
                f"HTTP, {row['rtt_ms']:.0f} ms round trip, {row['connections']} connections: "
                f"{row['events_per_s']:10,.0f} events/s (CPU includes the receiver)",
                file=sys.stderr,
            )
    return report


if __name__ == "__main__":
    main()
