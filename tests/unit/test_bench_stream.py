"""`make bench` measures one TrackStream of new users beside the multi-stream figure
(issue 17 item 4): the batches it sends, and the points and headline it reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import bench_grpc, run_all
from bench.harness import Point, point_tables, profile_tables
from bench.loadgen import NEW_USERS_STREAM, STREAM, new_user_bodies, with_sequence
from trackd.v1 import tracking_service_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]


def test_new_user_batches_hold_a_user_never_seen_before_in_every_event() -> None:
    bodies = new_user_bodies("run", size=50, count=3)
    batches = [pb.TrackStreamRequest.FromString(with_sequence(b, i)) for i, b in enumerate(bodies)]
    assert [b.sequence for b in batches] == [0, 1, 2]
    events = [event for batch in batches for event in batch.events]
    assert len(events) == 150
    assert len({event.user_id for event in events}) == 150
    assert all(event.user_id.startswith("run-") for event in events)
    assert {event.event_key for event in events} == {"signup", "my_conversion"}
    # The maps every Track bench sends, written after event_key and user_id (the order
    # every protobuf runtime writes, which trackd.rpc.wire splits by hand).
    first = events[0]
    assert dict(first.attributes) and dict(first.tags)
    assert bodies[0].startswith(b"\x12")  # field 2, events


@pytest.mark.bench
def test_bench_grpc_measures_one_stream_of_new_users_beside_the_multi_stream_points() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_grpc", "--quick", "--only", "stream", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    points = [Point(**p) for p in json.loads(done.stdout)["points"]]
    one = {p.target: p for p in points if p.scenario == NEW_USERS_STREAM}
    assert set(one) == {"trackd", "bare"}
    assert {p.target for p in points if p.scenario == STREAM} == {"trackd", "bare"}
    for point in one.values():
        assert point.concurrency == 1 and point.batch == 500
        assert point.events == 2_000 and point.errors == 0, point
        assert point.throughput > 0
    assert one["trackd"].ratio is not None and one["trackd"].ratio > 0

    tables = "\n".join(point_tables(points, "###"))
    assert "### TrackStream, events acknowledged\n" in tables
    assert "### TrackStream, events acknowledged, one stream of new users\n" in tables

    rows = run_all.headline({"grpc": {"points": [vars(p) for p in points]}})
    (row,) = [r for r in rows if "one stream of new users" in r[0]]
    assert row[1] == f"{one['trackd'].throughput:,.0f}"
    assert row[2] == ">= 300,000"


def test_a_profile_says_which_thread_of_which_process_was_busy() -> None:
    """py-spy's raw stacks (--threads --subprocesses) are counted per thread, the encoder
    process's command line (which holds ";") kept whole, and idle stacks left out."""
    encoder = (
        'process 7:"python -c from multiprocessing.spawn import spawn_main;'
        ' spawn_main(tracker_fd=23) --multiprocessing-fork"'
    )
    raw = "\n".join(
        [
            'process 5:"trackd serve";thread (5): MainThread;read_batch (trackd/rpc/wire.py:9) 6',
            'process 5:"trackd serve";thread (5): MainThread;select (selectors.py:1)'
            ";epoll_wait (libc.so.6) 50",
            'process 5:"trackd serve";thread (6): trackd-outbox;fdatasync (libc.so.6) 3',
            f"{encoder};thread (7): MainThread;plain_batch_text (events/payload.py:3) 1",
        ]
    )
    summary = bench_grpc.summarize_profile(raw)
    assert summary["samples"] == 10 and summary["idle"] == 50
    assert summary["threads"] == [
        ("trackd MainThread", 60.0),
        ("trackd trackd-outbox", 30.0),
        ("child MainThread", 10.0),
    ]
    assert [name for name, _ in summary["self"]] == [
        "read_batch (rpc/wire.py)",
        "fdatasync (libc.so.6)",
        "plain_batch_text (events/payload.py)",
    ]
    tables = "\n".join(
        profile_tables(
            [{"label": "x", "load": {"throughput": 1.0, "batch": 500}, **summary}], "###"
        )
    )
    assert "| trackd trackd-outbox | 30.0 |" in tables
