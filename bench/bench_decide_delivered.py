"""Decide with its decision events delivered, the SDK in-process against the daemon: CPU per
user when both POST their events to the same local receiver.

bench_decide holds the Decide RPC against optimizely-sdk's decide_all with the SDK's events
built and serialized but never sent, while the daemon's figure includes committing its
events and delivering them (to a file). This benchmark counts delivery on both sides, over
HTTP, to one local receiver (bench/agent_peer.py `Peer`, in this process) that counts the
events it is sent:
  - the SDK as a service embeds it, in a child process (so the receiver's CPU is not
    counted), with its own EventDispatcher (a new requests session per POST) pointed at the
    receiver, and either its default ForwardingEventProcessor (a POST per event, in the
    calling thread) or its BatchEventProcessor (batches of 10, one thread: its defaults, but
    an unbounded queue, as its default one drops events past 1,000), stopped at the end so
    that every event is sent. CPU: the child's whole process
    (`time.process_time`) over the pass, the processor's thread included;
  - the daemon (`--event-endpoint` the receiver), one Decide of every flag per user from 4
    client threads (bench_decide `_decide_pass`): CPU of its process tree until it is idle
    again, so delivering the pass's events is in it; the median of DAEMON_ROUNDS passes,
    each of users new to the daemon (one pass alone drifts ~10% here).
Users and datafile are bench_decide's (build_flags(50), sendFlagDecisions on); every pass
checks that the receiver got every event the pass decided to send.

    .venv/bin/python -m bench.bench_decide_delivered [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from bench import bench_decide
from bench.agent_peer import Peer, peer_server
from bench.gen_datafile import build_flags
from bench.harness import ROOT, machine, serve_command, settle, start_server
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

PROCESSORS = {
    "forwarding": "SDK decide_all(), ForwardingEventProcessor (its default): a POST per event",
    "batch": "SDK decide_all(), BatchEventProcessor (10 events a POST, its default)",
}
DAEMON = "daemon: one Decide of every flag, events committed, then POSTed in batches"
DAEMON_ROUNDS = 5  # the daemon's figure is the median of this many passes of new users


def sdk_pass(processor: str, url: str, count: int, prefix: str) -> dict[str, Any]:
    """Runs in the child: decide_all with events for `count` users; the CPU it took."""
    import optimizely.optimizely as optimizely
    from optimizely.event.event_processor import BatchEventProcessor, ForwardingEventProcessor
    from optimizely.event_dispatcher import EventDispatcher
    from optimizely.helpers.sdk_settings import OptimizelySdkSettings
    from optimizely.logger import NoOpLogger

    logging.getLogger("optimizely").setLevel(logging.CRITICAL + 1)
    sent = 0

    class ToReceiver:
        """The SDK's own dispatcher, sending to the local receiver instead of logx."""

        def dispatch_event(self, event: Any) -> None:
            nonlocal sent
            sent += sum(
                len(snapshot["events"])
                for visitor in event.params["visitors"]
                for snapshot in visitor["snapshots"]
            )
            event.url = url
            EventDispatcher.dispatch_event(event)

    dispatcher = ToReceiver()
    events: Any = (
        # An unbounded queue: its default holds 1,000 events and drops the rest, most of a
        # pass's (8,560 of 25,000 sent, 2026-12-07), which would leave their cost out.
        BatchEventProcessor(
            dispatcher, logger=NoOpLogger(), start_on_init=True, event_queue=queue.Queue()
        )
        if processor == "batch"
        else ForwardingEventProcessor(dispatcher, logger=NoOpLogger())
    )
    client = optimizely.Optimizely(
        build_flags(bench_decide.FLAGS),
        logger=NoOpLogger(),
        event_dispatcher=dispatcher,
        event_processor=events,
        settings=OptimizelySdkSettings(odp_disabled=True),
    )
    people = [
        (f"{prefix}-{user_id}", attributes) for user_id, attributes in bench_decide.users(count)
    ]
    cpu, began = time.process_time(), time.perf_counter()
    for user_id, attributes in people:
        client.create_user_context(user_id, attributes).decide_all()
    if processor == "batch":
        events.stop()  # flushes what is queued and joins its thread
    cpu, wall = time.process_time() - cpu, time.perf_counter() - began
    client.close()
    return {"users": count, "cpu_s": cpu, "wall_s": wall, "events": sent}


def _delivered(peer: Peer, target: str, prefix: str, expected: int, limit: float = 60.0) -> int:
    """What the receiver counted for the users of `prefix`, once it reaches `expected` (or
    after `limit` s)."""
    # The receiver counts by visitor id up to its last "-": bench_decide's ids are user-N.
    counted = f"{prefix}-user"
    deadline = time.monotonic() + limit
    while peer.delivered_for(target, counted) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return peer.delivered_for(target, counted)


def measure_sdk(peer: Peer, processor: str, count: int, run_id: str) -> dict[str, Any]:
    prefix = f"{run_id}-{processor}"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_decide_delivered",
            "--sdk-child",
            processor,
            peer.events_url("sdk"),
            str(count),
            prefix,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1800,
        check=True,
    )
    figures: dict[str, Any] = json.loads(done.stdout)
    figures["delivered"] = _delivered(peer, "sdk", prefix, figures["events"])
    figures["cpu_us_per_user"] = round(figures.pop("cpu_s") / count * 1e6, 1)
    return figures


def measure_daemon(peer: Peer, count: int, run_id: str, rounds: int = 1) -> dict[str, Any]:
    """`rounds` passes of `count` new users on one daemon (bench_decide's: a pass alone drifts
    ~10% here): the median round's CPU, every round's beside it, and every round's events
    counted at the receiver."""
    prefixes = [f"{run_id}-daemon{index}" for index in range(rounds)]
    with tempfile.TemporaryDirectory(prefix="trackd-bench-delivered-") as scratch:
        workdir = Path(scratch)
        datafile = workdir / "flags.json"
        datafile.write_text(build_flags(bench_decide.FLAGS))
        (workdir / "data").mkdir()
        command = serve_command(
            workdir / "data", datafile, "--event-endpoint", peer.events_url("trackd")
        )
        server = start_server("trackd", command, workdir)
        try:
            with (
                grpc.insecure_channel(server.address) as channel,
                ThreadPoolExecutor(bench_decide.CLIENT_THREADS) as pool,
            ):
                stub = pb_grpc.TrackingServiceStub(channel)
                stub.Decide(pb.DecideRequest(user_id="warm-up"), timeout=30)
                settle(server)
                passes = [
                    bench_decide._decide_pass(server, stub, pool, _requests(prefix, count))
                    for prefix in prefixes
                ]
        finally:
            server.stop()
    figures = bench_decide._median_round(passes)
    return {
        "users": count * rounds,
        "rounds": rounds,
        "cpu_us_per_user": figures["daemon_cpu_us_per_user"],
        "cpu_us_per_user_rounds": figures["daemon_cpu_us_per_user_rounds"],
        "events": sum(row["impressions"] for row in passes),
        "delivered": sum(
            _delivered(peer, "trackd", prefix, row["impressions"])
            for prefix, row in zip(prefixes, passes, strict=True)
        ),
    }


def _requests(prefix: str, count: int) -> list[pb.DecideRequest]:
    return [
        json_format.ParseDict(
            {"user_id": f"{prefix}-{user_id}", "attributes": attributes}, pb.DecideRequest()
        )
        for user_id, attributes in bench_decide.users(count)
    ]


def run(quick: bool) -> dict[str, Any]:
    # /proc counts the daemon's CPU in 10 ms ticks: a quick pass of 5 users could read 0
    # (then its ratios divided by zero), so even a quick pass is bench_decide's 100 users.
    counts = (
        {"forwarding": 3, "batch": 5, "daemon": bench_decide.QUICK_GRPC_USERS}
        if quick
        else {
            "forwarding": 100,
            "batch": 500,
            "daemon": 1000,
        }
    )
    run_id = f"d{int(time.time())}"
    with peer_server({}) as peer:
        passes = {
            processor: measure_sdk(peer, processor, counts[processor], run_id)
            for processor in PROCESSORS
        }
        passes["daemon"] = measure_daemon(
            peer, counts["daemon"], run_id, rounds=2 if quick else DAEMON_ROUNDS
        )
    daemon = passes["daemon"]["cpu_us_per_user"]
    for figures in passes.values():
        figures["over_daemon"] = round(figures["cpu_us_per_user"] / daemon, 1)
    return {"machine": machine(), "passes": passes}


def table(report: dict[str, Any]) -> list[str]:
    lines = [
        "| who | users | CPU us/user | events sent | events the receiver got"
        " | CPU per user / the daemon's |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, figures in report["passes"].items():
        rounds = figures.get("cpu_us_per_user_rounds", ())
        label = PROCESSORS.get(name, DAEMON) + (
            f" (median of {len(rounds)} passes: {', '.join(f'{cpu:,.0f}' for cpu in rounds)})"
            if len(rounds) > 1
            else ""
        )
        lines.append(
            f"| {label} | {figures['users']:,}"
            f" | {figures['cpu_us_per_user']:,.0f} | {figures['events']:,}"
            f" | {figures['delivered']:,} | **{figures['over_daemon']:.1f}x** |"
        )
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--sdk-child", nargs=4, metavar=("PROCESSOR", "URL", "USERS", "PREFIX"))
    options = parser.parse_args(argv)
    if options.sdk_child:
        processor, url, count, prefix = options.sdk_child
        print(json.dumps(sdk_pass(processor, url, int(count), prefix)))
        return None
    report = run(options.quick)
    print(json.dumps(report, indent=2) if options.json else "\n".join(table(report)))
    return report


if __name__ == "__main__":
    main()
