"""Start-up time, memory and datafile reload time with generated 1 MB and 10 MB datafiles.

Scenario 5 of issue 6. For the bundled example datafile (the fixed cost: interpreter,
grpcio, stubs) and datafiles of each size made by bench/gen_datafile.py:

  start-up   `trackd serve` from exec to its `started` log line, and to the first answered
             Activate (a fresh channel, `exp_0_0`); the daemon's CPU seconds until then and
             its peak RSS (VmHWM) once serving. Median of the runs, one daemon at a time.
  reload     in this process: parse_datafile() of the same text (what a hot reload does
             before swapping the snapshot), json.loads() alone (its floor), the memory the
             parsed snapshot holds and the parse's allocation peak (tracemalloc), the
             longest event-loop stall while it parses in a thread (as the daemon does) and
             inline (as it once did), and optimizely-sdk's constructor on the same text
             (what an embedding service pays).

    .venv/bin/python -m bench.bench_startup [--quick] [--json]

No thresholds: it reports, it does not judge.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import grpc

from bench import gen_datafile
from bench.harness import cpu_seconds, peak_rss_mb, serve_command, wait_started
from trackd.datafile import parse_datafile
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

MB = 1 << 20


def start_once(datafile: Path, workdir: Path, activate_key: str) -> dict[str, float]:
    """One daemon: exec -> `started` -> first Activate answered; then SIGTERM."""
    data_dir = Path(tempfile.mkdtemp(dir=workdir))
    log_path = data_dir / "log.jsonl"
    command = serve_command(data_dir, datafile)
    with log_path.open("wb") as log_file:
        t0 = time.perf_counter()
        popen = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        # Polled every 5 ms: the time to `started` is one of the figures.
        port = wait_started(popen, log_path, "trackd", limit=120, poll=0.005)
        started = time.perf_counter() - t0
        cpu_started = cpu_seconds(popen.pid)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.TrackingServiceStub(channel)
            stub.Activate(
                pb.ActivateRequest(experiment_key=activate_key, user_id="startup-user"),
                timeout=60,
                wait_for_ready=True,
            )
        first_answer = time.perf_counter() - t0
        return {
            "started_s": started,
            "first_activate_s": first_answer,
            "cpu_to_started_s": cpu_started,
            "peak_rss_mb": peak_rss_mb(popen.pid),
        }
    finally:
        popen.terminate()
        try:
            popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=10)


def median_seconds(run: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    samples = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), samples


def loop_stall_s(text: str, *, in_thread: bool) -> float:
    """The longest the event loop goes without running a 1 ms ticker while a reload parses
    `text`: in a worker thread, as `Reloader.offer` does, or inline on the loop."""
    import asyncio

    async def run() -> float:
        loop = asyncio.get_running_loop()
        worst = 0.0
        done = False

        async def tick() -> None:
            nonlocal worst
            last = loop.time()
            while not done:
                await asyncio.sleep(0.001)
                now = loop.time()
                worst = max(worst, now - last)
                last = now

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.01)
        if in_thread:
            await asyncio.to_thread(parse_datafile, text)
        else:
            parse_datafile(text)
        done = True
        await ticker
        return worst

    return asyncio.run(run())


def reload_figures(text: str, repeats: int, sdk_repeats: int) -> dict[str, Any]:
    parse_s, parse_samples = median_seconds(lambda: parse_datafile(text), repeats)
    json_s, _ = median_seconds(lambda: json.loads(text), repeats)
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    parse_datafile(text)
    cpu_pct = 100 * (time.process_time() - cpu0) / max(1e-9, time.perf_counter() - wall0)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    config = parse_datafile(text)
    gc.collect()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del config
    figures: dict[str, Any] = {
        "parse_datafile_s": parse_s,
        "parse_datafile_max_s": max(parse_samples),
        "json_loads_s": json_s,
        "parse_cpu_pct": cpu_pct,
        "snapshot_mb": (held - before) / MB,
        "parse_alloc_peak_mb": (peak - before) / MB,
        "loop_stall_thread_s": loop_stall_s(text, in_thread=True),
        "loop_stall_inline_s": loop_stall_s(text, in_thread=False),
        "repeats": repeats,
    }
    try:
        from optimizely import optimizely
        from optimizely.logger import NoOpLogger
    except ImportError:
        figures["sdk_constructor_s"] = None
        return figures
    logging.getLogger("optimizely").setLevel(logging.CRITICAL + 1)

    def sdk_load() -> None:
        client = optimizely.Optimizely(text, logger=NoOpLogger())
        assert client.is_valid
        client.close()

    figures["sdk_constructor_s"], _ = median_seconds(sdk_load, sdk_repeats)
    figures["sdk_repeats"] = sdk_repeats
    return figures


def measure(quick: bool) -> dict[str, Any]:
    sizes = [("100 KB", 100 * 1024), ("1 MB", MB)] if quick else [("1 MB", MB), ("10 MB", 10 * MB)]
    runs = 1 if quick else 3
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        workdir = Path(tmp)
        example = Path(str(files("trackd").joinpath("data/example_datafile.json")))
        cases: list[tuple[str, Path, str]] = [("bundled example", example, "checkout_flow")]
        for label, size in sizes:
            path = workdir / f"datafile-{size}.json"
            t0 = time.perf_counter()
            path.write_text(gen_datafile.generate(size))
            cases.append((label, path, "exp_0_0"))
            print(f"generated {label} in {time.perf_counter() - t0:.2f}s", file=sys.stderr)
        for label, path, key in cases:
            text = path.read_text()
            config = parse_datafile(text)
            starts = [start_once(path, workdir, key) for _ in range(runs)]
            row: dict[str, Any] = {
                "datafile": label,
                "bytes": len(text.encode()),
                "experiments": len(config.experiments_by_id),
                "audiences": len(config.audiences_by_id),
                "events": len(config.events_by_key),
                "runs": runs,
                **{
                    key: statistics.median(s[key] for s in starts)
                    for key in ("started_s", "first_activate_s", "cpu_to_started_s", "peak_rss_mb")
                },
                "started_max_s": max(s["started_s"] for s in starts),
            }
            del config
            repeats = (3 if quick else 7) if row["bytes"] < 5 * MB else (2 if quick else 5)
            row.update(reload_figures(text, repeats, sdk_repeats=1 if quick else 3))
            rows.append(row)
            print(
                f"{label:16} start {row['started_s']:.2f}s first Activate"
                f" {row['first_activate_s']:.2f}s RSS {row['peak_rss_mb']:.0f} MB"
                f" parse {row['parse_datafile_s'] * 1000:.1f} ms",
                file=sys.stderr,
            )
    return {
        "scenario": "startup",
        "rows": rows,
        "bench_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small datafiles, one run each")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    report = measure(args.quick)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
