"""Flag decisions: trackd's decide_all against optimizely-sdk's decide_all, in-process and
over gRPC.

On a generated 50-flag datafile (bench/gen_datafile.py `build_flags`: each flag an A/B test,
two targeted delivery rules, "Everyone Else" and 5 variables; `sendFlagDecisions` on), for
the same users:
  - trackd `trackd.decision.flags.decide_all`  (what Decide does for every flag)
  - SDK `user_context.decide_all([DISABLE_DECISION_EVENT])`: decisions only
  - SDK `user_context.decide_all()`: decisions and their events, built by the SDK's
    ForwardingEventProcessor in the calling thread and handed to a dispatcher that
    serializes them as the SDK's default dispatcher does (json.dumps of the payload) and
    leaves out only its HTTP POST
Both must agree on every decision (variation, enabled, rule, variables) before anything is
timed; the disagreements are counted and reported. CPU is this thread's (thread_time), so
nothing else on the machine or in the process counts. No thresholds: it reports.

Then the same users through a real daemon serving that datafile: one Decide call for every
flag per user, from 4 client threads in this process, with trackd's whole process tree's CPU
(the daemon, its encoder) read from /proc until the pass's events are delivered. The first
pass decides users afresh (decision events committed durably to the outbox, then encoded
as Event API JSON and delivered to its file); the second repeats them (feature tests sticky
and not sent again; rollouts sent every time, since sendFlagDecisions is on); a third passes
DISABLE_DECISION_EVENT. The three run GRPC_ROUNDS times, each round with users new to the
daemon, and each pass reports its median round (one pass alone drifts ~10% on this
machine). Each is compared with the SDK doing the same (events or none). The
floor: a bare grpc.aio server (bench/bare_server.py) answering the same calls with a canned
response of the same size, on asyncio's loop and on uvloop (trackd's).

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

from bench.gen_datafile import build_flags
from bench.harness import (
    RESULTS,
    Server,
    append_results,
    machine,
    measured,
    percentile,
    serve_command,
    settle,
    start_bare,
    start_server,
)
from trackd.datafile import ProjectConfig, parse_datafile
from trackd.decision.flags import decide_all
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

CLIENT_THREADS = 4
QUICK_GRPC_USERS = 100
GRPC_ROUNDS = 5  # each gRPC pass's figure is the median of this many rounds

NEW_USERS = "new users (decision events)"
SAME_USERS = "same users again (feature tests sticky, rollout events sent again)"
QUIET_PASS = "DISABLE_DECISION_EVENT"
BARE_PASS = "bare grpc.aio server, canned response (the floor)"
BARE_UVLOOP_PASS = "bare grpc.aio server on uvloop (trackd's loop), canned response"
BARE_PASSES = {"bare": BARE_PASS, "bare+uvloop": BARE_UVLOOP_PASS}
# The SDK figure each gRPC pass is held against: the same events, or none.
SDK_FIGURE = {NEW_USERS: "sdk_events", SAME_USERS: "sdk_events", QUIET_PASS: "sdk"}

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


class SerializingDispatcher:
    """The SDK's default EventDispatcher without its HTTP POST: the payload serialized as it
    serializes it (json.dumps), then dropped. Counts what it was given."""

    def __init__(self) -> None:
        self.events = 0
        self.bytes = 0

    def dispatch_event(self, event: Any) -> None:
        self.events += 1
        self.bytes += len(json.dumps(event.params))


def sdk_client(datafile: str) -> tuple[optimizely.Optimizely, SerializingDispatcher]:
    """The SDK as a service embedding it would run decide_all: no ODP, each decision event
    built and serialized in the calling thread (ForwardingEventProcessor)."""
    dispatcher = SerializingDispatcher()
    client = optimizely.Optimizely(
        datafile,
        logger=NoOpLogger(),
        event_dispatcher=dispatcher,
        event_processor=ForwardingEventProcessor(dispatcher, logger=NoOpLogger()),
        settings=OptimizelySdkSettings(odp_disabled=True),
    )
    return client, dispatcher


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


def _decide_pass(
    server: Server, stub: Any, pool: ThreadPoolExecutor, batch: list[pb.DecideRequest]
) -> dict[str, Any]:
    """One pass of `batch` against `server`: its CPU per call until it is idle again (so
    delivering the pass's events is in it; settle: how long that took after the last call)."""
    split = server.cpu_split()
    with measured(server) as usage:
        began = time.perf_counter()
        answers = list(pool.map(lambda r: stub.Decide(r, timeout=30), batch))
        calls_s = time.perf_counter() - began
        delivered = settle(server)
    split = {part: seconds - split[part] for part, seconds in server.cpu_split().items()}
    return {
        "calls": len(answers),
        # Where the daemon's CPU ran (`Server.cpu_split`), us per user.
        **{f"{part}_us": round(seconds / len(answers) * 1e6, 1) for part, seconds in split.items()},
        "calls_per_s": round(len(answers) / calls_s),
        "daemon_cpu_us_per_user": round(usage["cpu"] / len(answers) * 1e6, 1),
        "peak_rss_mb": round(usage["rss"]),
        "impressions": sum(d.impression_recorded for a in answers for d in a.decisions),
        "settle_s": round(delivered, 2),
    }


def warmed_pass(server: Server, batch: list[pb.DecideRequest]) -> dict[str, Any]:
    """`_decide_pass` on a fresh channel from CLIENT_THREADS threads, after one warm-up
    Decide (its connection made, its encoder process started) and the server idle again."""
    with (
        grpc.insecure_channel(server.address) as channel,
        ThreadPoolExecutor(CLIENT_THREADS) as pool,
    ):
        stub = pb_grpc.TrackingServiceStub(channel)
        stub.Decide(pb.DecideRequest(user_id="warm-up"), timeout=30)
        settle(server)
        return _decide_pass(server, stub, pool, batch)


def decide_over_grpc(
    datafile: str, people: list[tuple[str, dict[str, Any]]], rounds: int = 1
) -> dict[str, Any]:
    """Daemon CPU (whole process tree) per user for one Decide of every flag, three passes
    a round; then the bare servers' for the same calls, a pass a round. Each pass's row is
    its median round (`_median_round`): on 2 busy shared cores one pass alone drifts ~10%.

    Round 0 decides `people` as they are, the SDK's own users; each later round the same
    attributes under user ids of its own, so its first pass meets new users again."""
    base = [
        json_format.ParseDict({"user_id": user_id, "attributes": attributes}, pb.DecideRequest())
        for user_id, attributes in people
    ]

    def round_requests(index: int) -> tuple[list[pb.DecideRequest], list[pb.DecideRequest]]:
        suffix = f"-r{index}" if index else ""
        requests = [
            pb.DecideRequest(user_id=r.user_id + suffix, attributes=r.attributes) for r in base
        ]
        quiet = [
            pb.DecideRequest(
                user_id=r.user_id,
                attributes=r.attributes,
                options=[pb.DECIDE_OPTION_DISABLE_DECISION_EVENT],
            )
            for r in requests
        ]
        return requests, quiet

    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="trackd-bench-decide-") as scratch:
        workdir = Path(scratch)
        path = workdir / "flags.json"
        path.write_text(datafile)
        (workdir / "data").mkdir()
        for name, start in (
            (
                "trackd",
                lambda: start_server("trackd", serve_command(workdir / "data", path), workdir),
            ),
            ("bare", lambda: start_bare(workdir)),
            ("bare+uvloop", lambda: start_bare(workdir, loop="uvloop")),
        ):
            server = start()
            try:
                with (
                    grpc.insecure_channel(server.address) as channel,
                    ThreadPoolExecutor(CLIENT_THREADS) as pool,
                ):
                    stub = pb_grpc.TrackingServiceStub(channel)
                    stub.Decide(base[0], timeout=30)  # connected and warm
                    settle(server)
                    for index in range(rounds):
                        requests, quiet = round_requests(index)
                        if name in BARE_PASSES:
                            runs.setdefault(BARE_PASSES[name], []).append(
                                _decide_pass(server, stub, pool, requests)
                            )
                            continue
                        for pass_name, batch in (
                            (NEW_USERS, requests),
                            (SAME_USERS, requests),
                            (QUIET_PASS, quiet),
                        ):
                            runs.setdefault(pass_name, []).append(
                                _decide_pass(server, stub, pool, batch)
                            )
            finally:
                server.stop()
    return {name: _median_round(rounds_of) for name, rounds_of in runs.items()}


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round of median daemon CPU (the lower middle one of an even count), whole, with
    every round's CPU beside it."""
    ranked = sorted(rounds, key=lambda row: row["daemon_cpu_us_per_user"])
    return {
        **ranked[(len(ranked) - 1) // 2],
        "daemon_cpu_us_per_user_rounds": [row["daemon_cpu_us_per_user"] for row in rounds],
    }


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
    sdk, dispatcher = sdk_client(datafile)
    people = users(user_count)
    try:
        # Same answers first: a fast wrong engine is not worth timing.
        compared, wrong, examples = disagreements(config, sdk, people)

        def trackd_decide_all(user_id: str, attributes: dict[str, Any]) -> object:
            return decide_all(config, user_id, attributes)

        def sdk_decide_all(user_id: str, attributes: dict[str, Any]) -> object:
            context = sdk.create_user_context(user_id, attributes)
            return context.decide_all(["DISABLE_DECISION_EVENT"])

        def sdk_decide_all_events(user_id: str, attributes: dict[str, Any]) -> object:
            return sdk.create_user_context(user_id, attributes).decide_all()

        ours = per_user(trackd_decide_all, people, trackd_repeats)
        theirs = per_user(sdk_decide_all, people, sdk_repeats)
        sent_before = dispatcher.events
        theirs_events = per_user(sdk_decide_all_events, people, sdk_repeats)
        sdk_events_per_user = (dispatcher.events - sent_before) / (user_count * sdk_repeats)
    finally:
        sdk.close()
    # /proc counts CPU in 10 ms ticks: even a quick run sends the bare server enough calls
    # (about 40 ms of its CPU) for its figure not to round to nothing.
    over_grpc = decide_over_grpc(
        datafile,
        users(QUICK_GRPC_USERS) if options.quick else people,
        rounds=1 if options.quick else GRPC_ROUNDS,
    )
    flags = len(config.flags_by_key)
    sdk_figures = {
        "sdk": {**theirs, "cpu_us_per_flag": round(theirs["cpu_us_per_user"] / flags, 3)},
        "sdk_events": {
            **theirs_events,
            "cpu_us_per_flag": round(theirs_events["cpu_us_per_user"] / flags, 3),
            "events_per_user": round(sdk_events_per_user, 1),
        },
    }
    report = {
        "datafile": f"generated by bench/gen_datafile.py build_flags({FLAGS}):"
        f" {len(datafile):,} bytes, {flags} flags",
        "flags": flags,
        "users": user_count,
        "grpc_users": over_grpc[NEW_USERS]["calls"],
        "compared": compared,
        "disagreements": wrong,
        "disagreement_examples": examples,
        "repeats": {"trackd": trackd_repeats, "sdk": sdk_repeats},
        "trackd": {**ours, "cpu_us_per_flag": round(ours["cpu_us_per_user"] / flags, 3)},
        **sdk_figures,
        "sdk_over_trackd_cpu": round(theirs["cpu_us_per_user"] / ours["cpu_us_per_user"], 1),
        "grpc": over_grpc,
        "sdk_over_daemon_cpu": {
            name: round(
                sdk_figures[SDK_FIGURE[name]]["cpu_us_per_user"] / row["daemon_cpu_us_per_user"],
                1,
            )
            for name, row in over_grpc.items()
            if name in SDK_FIGURE
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
    ours, theirs, theirs_events = report["trackd"], report["sdk"], report["sdk_events"]
    sdk_repeats = report["repeats"]["sdk"]
    rows = [
        ("trackd `decide_all` (in-process)", ours, report["repeats"]["trackd"]),
        ("SDK `decide_all([DISABLE_DECISION_EVENT])`", theirs, sdk_repeats),
        (
            f"SDK `decide_all()`, {theirs_events['events_per_user']} events/user built and"
            " serialized",
            theirs_events,
            sdk_repeats,
        ),
    ]
    grpc_rows = report["grpc"]
    rounds = max(
        (len(row.get("daemon_cpu_us_per_user_rounds", ())) for row in grpc_rows.values()), default=1
    )
    bares = [grpc_rows[name] for name in BARE_PASSES.values() if name in grpc_rows]
    bare = min(bares, key=lambda row: row["daemon_cpu_us_per_user"]) if bares else None
    lines = [
        f"{heading} Decide, in-process: trackd decide_all vs optimizely-sdk decide_all",
        "",
        f"`bench/bench_decide.py`. Payload: {report['datafile']} (each an A/B test, two"
        " targeted delivery rules, Everyone Else, a variable of every type; sendFlagDecisions"
        f" on); {report['users']:,} users with 1-5 attributes, every flag for each, the same"
        " users for both engines. Load generator: a loop in one thread, concurrency 1. CPU is"
        " that thread's (`thread_time`), median of the passes; wall p50/p99 time each user's"
        f" call alone. Peak RSS {report['peak_rss_mb']:.0f} MB (both engines in one process)."
        " The SDK with events builds each decision event with its ForwardingEventProcessor and"
        " serializes it as its default dispatcher does (json.dumps), leaving out the HTTP POST.",
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
        f"SDK CPU per user / trackd CPU per user (decisions only):"
        f" **{report['sdk_over_trackd_cpu']}x**; trackd in-process decide per flag:"
        f" **{ours['cpu_us_per_flag']:.2f} us** (goal <= 3 us).",
        "",
        *[f"- disagreement: `{example}`" for example in report["disagreement_examples"]],
        *([""] if report["disagreement_examples"] else []),
        f"{heading} Decide over gRPC: one call for every flag, against the SDK's decide_all",
        "",
        f"The same {report['grpc_users']:,} users, one `Decide` (every flag) each, from"
        f" {CLIENT_THREADS} client threads of a grpcio client in the bench process, against a"
        " daemon serving the same datafile. Daemon CPU is its whole process tree's (the daemon"
        " and its encoder, from /proc) per user, from the pass's first call until the daemon is"
        " idle again, so committing the pass's events durably and delivering them to the events"
        " file is in it (settle: how long that took after the last call). Each pass is held"
        " against the in-process SDK figure above that does the same: with its events for the"
        " passes that record them, without for DISABLE_DECISION_EVENT. Each pass ran"
        f" {rounds} round{'s' if rounds != 1 else ''} (the daemon's in order: new users,"
        " the same again, DISABLE_DECISION_EVENT for them; each round's users new to the"
        " daemon): a row is its median round, every round's CPU beside it.",
        "",
        "| pass | calls/s | daemon CPU us/user | SDK CPU us/user / daemon's |"
        " each round's CPU us/user | decision events recorded | peak RSS MB | settle s |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
        *[
            f"| {name} | {row['calls_per_s']:,} | {row['daemon_cpu_us_per_user']:,.1f}"
            f" | {_ratio(report, name)} | {_rounds(row)} | {row['impressions']:,}"
            f" | {row['peak_rss_mb']} | {row['settle_s']} |"
            for name, row in grpc_rows.items()
        ],
        "",
        "Goal: at least 10x less CPU per user than the SDK's in-process decide_all.",
        *(
            []
            if bare is None
            else [
                "",
                f"The cheaper bare server's {bare['daemon_cpu_us_per_user']:,.1f} us per call is"
                " what grpc.aio itself costs for these messages: no daemon on this stack can go"
                " below it.",
            ]
        ),
        "",
    ]
    return lines


def _rounds(row: dict[str, Any]) -> str:
    return ", ".join(f"{cpu:,.0f}" for cpu in row.get("daemon_cpu_us_per_user_rounds", ()))


def _ratio(report: dict[str, Any], name: str) -> str:
    ratio = report["sdk_over_daemon_cpu"].get(name)
    return "n/a" if ratio is None else f"**{ratio}x**"


if __name__ == "__main__":
    main(sys.argv[1:])
