"""In-process decision cost: trackd's decide() against optimizely-sdk on the same inputs.

Three figures per decision, on the bundled example datafile and the same users:
  - trackd decide()            (what trackd does per experiment per request)
  - SDK get_variation()         (the SDK's decision, no impression)
  - SDK activate()              (decision + impression event, no-op event dispatcher)
Also the cost of loading the datafile in each. No thresholds: it reports, it does not judge.

    .venv/bin/python -m bench.bench_decisions [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import sys
import time
from collections.abc import Callable
from importlib.resources import files
from typing import Any

from optimizely import optimizely
from optimizely.logger import NoOpLogger

from trackd.datafile import parse_datafile
from trackd.decision import decide

DEVICES = ("iPhone", "Android", "iPad", None)
AD_SOURCES = ("google", "facebook", "newsletter")


class NoOpDispatcher:
    def dispatch_event(self, event: Any) -> None:
        pass


def users(count: int) -> list[tuple[str, dict[str, Any]]]:
    result = []
    for n in range(count):
        attributes: dict[str, Any] = {"ad_source": AD_SOURCES[n % 3]}
        device = DEVICES[n % 4]
        if device is not None:
            attributes["device"] = device
        result.append((f"user-{n:08d}", attributes))
    return result


def per_call_us(run: Callable[[], int], repeats: int) -> float:
    """Median over `repeats` runs of the time per call; `run` returns its number of calls."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        calls = run()
        samples.append((time.perf_counter_ns() - start) / calls / 1000)
    return statistics.median(samples)


def latency_us(calls: list[Callable[[], object]]) -> dict[str, float]:
    """p50/p99 of single calls, each timed alone (the timer adds ~0.1 us to every sample)."""
    perf = time.perf_counter_ns
    samples = []
    for call in calls:
        start = perf()
        call()
        samples.append(perf() - start)
    samples.sort()
    return {
        "p50": round(samples[len(samples) // 2] / 1000, 3),
        "p99": round(samples[int(len(samples) * 0.99)] / 1000, 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts (test-suite smoke run)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    options = parser.parse_args(argv)
    user_count, repeats, loads = (50, 2, 3) if options.quick else (4000, 7, 50)

    logging.getLogger("optimizely").setLevel(logging.CRITICAL + 1)
    datafile = files("trackd").joinpath("data/example_datafile.json").read_text()
    config = parse_datafile(datafile)
    sdk = optimizely.Optimizely(
        datafile, logger=NoOpLogger(), event_dispatcher=NoOpDispatcher(), skip_json_validation=True
    )
    experiments = [e for e in config.experiments_by_key.values() if e.is_running]
    calls = [(experiment, user) for user in users(user_count) for experiment in experiments]

    # Same answers first: a fast wrong engine is not worth timing.
    for experiment, (user_id, attributes) in calls:
        ours = decide(config, experiment, user_id, attributes).variation
        theirs = sdk.get_variation(experiment.key, user_id, attributes)
        assert (ours.key if ours else None) == theirs, (experiment.key, user_id)

    def run_decide() -> int:
        for experiment, (user_id, attributes) in calls:
            decide(config, experiment, user_id, attributes)
        return len(calls)

    def run_get_variation() -> int:
        get_variation = sdk.get_variation
        for experiment, (user_id, attributes) in calls:
            get_variation(experiment.key, user_id, attributes)
        return len(calls)

    def run_activate() -> int:
        activate = sdk.activate
        for experiment, (user_id, attributes) in calls:
            activate(experiment.key, user_id, attributes)
        return len(calls)

    def run_parse() -> int:
        for _ in range(loads):
            parse_datafile(datafile)
        return loads

    def run_sdk_load() -> int:
        for _ in range(loads):
            optimizely.Optimizely(
                datafile, logger=NoOpLogger(), event_dispatcher=NoOpDispatcher()
            ).close()
        return loads

    cpu0, wall0 = time.process_time(), time.perf_counter()
    decide_us = per_call_us(run_decide, repeats)
    get_variation_us = per_call_us(run_get_variation, repeats)
    activate_us = per_call_us(run_activate, repeats)
    cpu_pct = 100 * (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    percentiles = {
        "trackd_decide": latency_us(
            [lambda e=e, u=u, a=a: decide(config, e, u, a) for e, (u, a) in calls]
        ),
        "sdk_get_variation": latency_us(
            [lambda e=e.key, u=u, a=a: sdk.get_variation(e, u, a) for e, (u, a) in calls]
        ),
        "sdk_activate": latency_us(
            [lambda e=e.key, u=u, a=a: sdk.activate(e, u, a) for e, (u, a) in calls]
        ),
    }
    report = {
        "decisions_per_run": len(calls),
        "repeats": repeats,
        "us_per_decision": {
            "trackd_decide": round(decide_us, 3),
            "sdk_get_variation": round(get_variation_us, 3),
            "sdk_activate": round(activate_us, 3),
        },
        "decisions_per_s": {
            "trackd_decide": round(1e6 / decide_us),
            "sdk_get_variation": round(1e6 / get_variation_us),
            "sdk_activate": round(1e6 / activate_us),
        },
        "latency_us": percentiles,
        "cpu_pct": round(cpu_pct),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "datafile": f"bundled example ({len(datafile)} bytes, {len(experiments)} running"
        " experiments)",
        "users": user_count,
        "sdk_over_trackd": {
            "get_variation": round(get_variation_us / decide_us, 1),
            "activate": round(activate_us / decide_us, 1),
        },
        "us_per_datafile_load": {
            "trackd_parse_datafile": round(per_call_us(run_parse, repeats), 1),
            "sdk_constructor": round(per_call_us(run_sdk_load, repeats), 1),
        },
    }
    sdk.close()
    if options.json:
        print(json.dumps(report, indent=2))
    else:
        figures = report["us_per_decision"]
        print(f"{len(calls)} decisions per run, median of {repeats} runs, example datafile")
        print(f"  trackd decide()        {figures['trackd_decide']:9.3f} us/decision")
        print(
            f"  SDK get_variation()    {figures['sdk_get_variation']:9.3f} us/decision"
            f"  ({report['sdk_over_trackd']['get_variation']}x)"
        )
        print(
            f"  SDK activate()         {figures['sdk_activate']:9.3f} us/decision"
            f"  ({report['sdk_over_trackd']['activate']}x)"
        )
        loads_us = report["us_per_datafile_load"]
        print(
            f"  datafile load: parse_datafile {loads_us['trackd_parse_datafile']} us,"
            f" SDK constructor {loads_us['sdk_constructor']} us"
        )
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
