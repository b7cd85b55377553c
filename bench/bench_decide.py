"""In-process flag decisions: trackd's decide_all against optimizely-sdk's decide_all.

On a generated 50-flag datafile (bench/gen_datafile.py `build_flags`: each flag an A/B test,
two targeted delivery rules, "Everyone Else" and 5 variables), for the same users:
  - trackd `trackd.decision.flags.decide_all`  (what Decide does for every flag)
  - SDK `user_context.decide_all([DISABLE_DECISION_EVENT])`, no event processor thread
Both must agree on every decision (variation, enabled, rule, variables) before anything is
timed; the disagreements are counted and reported. CPU is this thread's (thread_time), so
nothing else on the machine or in the process counts. No thresholds: it reports.

Then the same users through a real daemon serving that datafile: one Decide call for every
flag per user, from 4 client threads in this process, with trackd's whole process tree's CPU
(the daemon, its encoder) read from /proc until the pass's events are delivered. The first
pass decides users afresh (decision events, committed to the outbox and delivered to its
file); the second repeats them (feature tests sticky and not sent again; rollouts are sent
every time when the datafile's sendFlagDecisions says so); a third passes
DISABLE_DECISION_EVENT, as the SDK side does.

    .venv/bin/python -m bench.bench_decide [--quick] [--json] [--no-write]

The full run appends a section to bench/results/<YYYY-MM-DD>.md unless --no-write (run_all
renders it in its own section); --quick writes nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from optimizely import optimizely
from optimizely.event.event_processor import ForwardingEventProcessor
from optimizely.helpers.sdk_settings import OptimizelySdkSettings
from optimizely.logger import NoOpLogger

from bench.bench_decisions import NoOpDispatcher
from bench.gen_datafile import build_flags
from bench.harness import (
    RESULTS,
    append_results,
    machine,
    measured,
    percentile,
    serve_command,
    settle,
    start_server,
)
from trackd.datafile import ProjectConfig, parse_datafile
from trackd.decision.flags import decide_all
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

CLIENT_THREADS = 4

FLAGS = 50
DEVICES = ("iPhone", "Android", "iPad", None)
COUNTRIES = ("US", "FR", "DE", None)
PLANS = ("pro", "pro-annual", "free", None)
VERSIONS = ("1.9.0", "2.0.1", "2.1.0", "2.3.4", None)


def users(count: int) -> list[tuple[str, dict[str, Any]]]:
    """Users whose attributes reach every audience and miss each, in different mixes."""
    result = []
    for n in range(count):
        attributes: dict[str, Any] = {"age": 12 + n * 7 % 50}
        for key, values in (
            ("device", DEVICES),
            ("country", COUNTRIES),
            ("plan", PLANS),
            ("app_version", VERSIONS),
        ):
            value = values[n * 7 // 3 % len(values)] if key == "plan" else values[n % len(values)]
            if value is not None:
                attributes[key] = value
        result.append((f"user-{n:08d}", attributes))
    return result


def sdk_client(datafile: str) -> optimizely.Optimizely:
    """The SDK as a service embedding it would run decide_all: no ODP, events forwarded to a
    no-op dispatcher in the calling thread (none are made: DISABLE_DECISION_EVENT)."""
    dispatcher = NoOpDispatcher()
    return optimizely.Optimizely(
        datafile,
        logger=NoOpLogger(),
        event_dispatcher=dispatcher,
        event_processor=ForwardingEventProcessor(dispatcher, logger=NoOpLogger()),
        settings=OptimizelySdkSettings(odp_disabled=True),
    )


def disagreements(
    config: ProjectConfig,
    sdk: optimizely.Optimizely,
    people: list[tuple[str, dict[str, Any]]],
) -> tuple[int, int, list[str]]:
    """(decisions compared, disagreements, the first few of them written out)."""
    compared, wrong, examples = 0, 0, []
    for user_id, attributes in people:
        theirs = sdk.create_user_context(user_id, attributes).decide_all(["DISABLE_DECISION_EVENT"])
        ours = decide_all(config, user_id, attributes)
        if [d.flag_key for d in ours] != list(theirs):
            wrong += 1
            examples.append(f"{user_id}: flag order {[d.flag_key for d in ours]}")
        for decision in ours:
            compared += 1
            expected = theirs.get(decision.flag_key)
            got = (
                decision.variation_key,
                decision.enabled,
                decision.rule_key,
                dict(decision.variables),
            )
            want = (
                None
                if expected is None
                else (
                    expected.variation_key,
                    expected.enabled,
                    expected.rule_key,
                    expected.variables,
                )
            )
            if got != want:
                wrong += 1
                if len(examples) < 5:
                    examples.append(f"{user_id} {attributes} {decision.flag_key}: {got} != {want}")
    return compared, wrong, examples


def per_user(run: Callable[[str, dict[str, Any]], object], people: list[Any], repeats: int) -> Any:
    """Median over `repeats` passes of this thread's CPU us per user; wall p50/p99 per user
    from timing each call of every pass (the timer adds ~0.1 us to each)."""
    cpu_runs, walls = [], []
    perf, cpu = time.perf_counter_ns, time.thread_time_ns
    for _ in range(repeats):
        started = cpu()
        for user_id, attributes in people:
            begun = perf()
            run(user_id, attributes)
            walls.append(perf() - begun)
        cpu_runs.append((cpu() - started) / len(people) / 1000)
    walls.sort()
    return {
        "cpu_us_per_user": round(statistics.median(cpu_runs), 2),
        "cpu_us_per_user_runs": [round(x, 2) for x in cpu_runs],
        "wall_p50_us": round(percentile(walls, 0.5) / 1000, 2),
        "wall_p99_us": round(percentile(walls, 0.99) / 1000, 2),
    }


def decide_over_grpc(datafile: str, people: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Daemon CPU (whole process tree) per user for one Decide of every flag, three passes."""
    requests = [
        json_format.ParseDict({"user_id": user_id, "attributes": attributes}, pb.DecideRequest())
        for user_id, attributes in people
    ]
    quiet = [
        pb.DecideRequest(
            user_id=r.user_id,
            attributes=r.attributes,
            options=[pb.DECIDE_OPTION_DISABLE_DECISION_EVENT],
        )
        for r in requests
    ]
    passes: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="trackd-bench-decide-") as scratch:
        workdir = Path(scratch)
        path = workdir / "flags.json"
        path.write_text(datafile)
        (workdir / "data").mkdir()
        server = start_server("trackd", serve_command(workdir / "data", path), workdir)
        try:
            with grpc.insecure_channel(server.address) as channel:
                stub = pb_grpc.TrackingServiceStub(channel)
                stub.Decide(requests[0], timeout=30)  # connected and warm
                settle(server)
                with ThreadPoolExecutor(CLIENT_THREADS) as pool:
                    for name, batch in (
                        ("new users (decision events)", requests),
                        ("same users again (sticky, no events)", requests),
                        ("DISABLE_DECISION_EVENT", quiet),
                    ):
                        with measured(server) as usage:
                            began = time.perf_counter()
                            answers = list(pool.map(lambda r: stub.Decide(r, timeout=30), batch))
                            calls_s = time.perf_counter() - began
                            # Inside the measurement: delivering the pass's events is its cost.
                            delivered = settle(server)
                        passes[name] = {
                            "calls": len(answers),
                            "calls_per_s": round(len(answers) / calls_s),
                            "daemon_cpu_us_per_user": round(usage["cpu"] / len(answers) * 1e6, 1),
                            "peak_rss_mb": round(usage["rss"]),
                            "impressions": sum(
                                d.impression_recorded for a in answers for d in a.decisions
                            ),
                            "settle_s": round(delivered, 2),
                        }
        finally:
            server.stop()
    return passes


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts (test-suite smoke run)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--no-write", action="store_true", help="append no results section")
    options = parser.parse_args(argv)
    user_count, trackd_repeats, sdk_repeats = (20, 2, 1) if options.quick else (1000, 7, 3)

    logging.getLogger("optimizely").setLevel(logging.CRITICAL + 1)
    datafile = build_flags(FLAGS)
    config = parse_datafile(datafile)
    sdk = sdk_client(datafile)
    people = users(user_count)
    try:
        # Same answers first: a fast wrong engine is not worth timing.
        compared, wrong, examples = disagreements(config, sdk, people)

        def trackd_decide_all(user_id: str, attributes: dict[str, Any]) -> object:
            return decide_all(config, user_id, attributes)

        def sdk_decide_all(user_id: str, attributes: dict[str, Any]) -> object:
            context = sdk.create_user_context(user_id, attributes)
            return context.decide_all(["DISABLE_DECISION_EVENT"])

        ours = per_user(trackd_decide_all, people, trackd_repeats)
        theirs = per_user(sdk_decide_all, people, sdk_repeats)
    finally:
        sdk.close()
    over_grpc = decide_over_grpc(datafile, people)
    flags = len(config.flags_by_key)
    report = {
        "datafile": f"generated by bench/gen_datafile.py build_flags({FLAGS}):"
        f" {len(datafile):,} bytes, {flags} flags",
        "flags": flags,
        "users": user_count,
        "compared": compared,
        "disagreements": wrong,
        "disagreement_examples": examples,
        "repeats": {"trackd": trackd_repeats, "sdk": sdk_repeats},
        "trackd": {**ours, "cpu_us_per_flag": round(ours["cpu_us_per_user"] / flags, 3)},
        "sdk": {**theirs, "cpu_us_per_flag": round(theirs["cpu_us_per_user"] / flags, 3)},
        "sdk_over_trackd_cpu": round(theirs["cpu_us_per_user"] / ours["cpu_us_per_user"], 1),
        "grpc": over_grpc,
        "sdk_over_daemon_cpu": {
            name: round(theirs["cpu_us_per_user"] / row["daemon_cpu_us_per_user"], 1)
            for name, row in over_grpc.items()
        },
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if not options.quick and not options.no_write:
        now = dt.datetime.now().astimezone()
        path = append_results(
            RESULTS,
            now,
            "\n".join(
                [
                    f"## Decide: `python -m bench.bench_decide` ({now:%Y-%m-%d %H:%M:%S %z})",
                    "",
                    "Machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()) + ".",
                    "",
                    *section(report, "###"),
                ]
            ),
        )
        print(f"appended to {path}", file=sys.stderr)
    if options.json:
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(section(report, "##")))
    return report


def section(report: dict[str, Any], heading: str) -> list[str]:
    """The report as markdown under `heading` ("###", "### 8."): run_all's scenario section
    and this module's own results section."""
    ours, theirs = report["trackd"], report["sdk"]
    rows = [
        ("trackd `decide_all` (in-process)", ours, report["repeats"]["trackd"]),
        ("SDK `decide_all([DISABLE_DECISION_EVENT])`", theirs, report["repeats"]["sdk"]),
    ]
    lines = [
        f"{heading} Decide, in-process: trackd decide_all vs optimizely-sdk decide_all",
        "",
        f"`bench/bench_decide.py`. Payload: {report['datafile']} (each an A/B test, two"
        " targeted delivery rules, Everyone Else, a variable of every type);"
        f" {report['users']:,} users with 1-5 attributes, every flag for each, the same users"
        " for both engines. Load generator: a loop in one thread, concurrency 1. CPU is that"
        " thread's (`thread_time`), median of the passes; wall p50/p99 time each user's call"
        f" alone. Peak RSS {report['peak_rss_mb']:.0f} MB (both engines in one process).",
        "",
        f"Agreement, checked before timing: {report['compared']:,} decisions compared"
        " (variation, enabled, rule, variables),"
        f" **{report['disagreements']} disagreements**.",
        "",
        "| engine | passes | CPU us/user | CPU us/flag | wall p50 us/user | wall p99 us/user |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {label} | {passes} | {row['cpu_us_per_user']:,.1f} | {row['cpu_us_per_flag']:.2f}"
            f" | {row['wall_p50_us']:,.1f} | {row['wall_p99_us']:,.1f} |"
            for label, row, passes in rows
        ],
        "",
        f"SDK CPU per user / trackd CPU per user: **{report['sdk_over_trackd_cpu']}x**;"
        f" trackd in-process decide per flag: **{ours['cpu_us_per_flag']:.2f} us** (goal <= 3 us).",
        "",
        *[f"- disagreement: `{example}`" for example in report["disagreement_examples"]],
        *([""] if report["disagreement_examples"] else []),
        f"{heading} Decide over gRPC: one call for every flag, against the SDK's decide_all",
        "",
        f"The same {report['users']:,} users, one `Decide` (every flag) each, from"
        f" {CLIENT_THREADS} client threads of a grpcio client in the bench process, against a"
        " daemon serving the same datafile. Daemon CPU is its whole process tree's (the daemon"
        " and its encoder, from /proc) per user, from the pass's first call until the daemon is"
        " idle again, so delivering the pass's events to the events file is in it (settle: how"
        " long that took after the last call). The SDK figure is the in-process one above.",
        "",
        "| pass | calls/s | daemon CPU us/user | SDK CPU us/user / daemon's |"
        " decision events recorded | peak RSS MB | settle s |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {name} | {row['calls_per_s']:,} | {row['daemon_cpu_us_per_user']:,.1f}"
            f" | **{report['sdk_over_daemon_cpu'][name]}x** | {row['impressions']:,}"
            f" | {row['peak_rss_mb']} | {row['settle_s']} |"
            for name, row in report["grpc"].items()
        ],
        "",
        "Goal: at least 10x less CPU per user than the SDK's in-process decide_all.",
        "",
    ]
    return lines


if __name__ == "__main__":
    main(sys.argv[1:])
