"""A SIGKILLed daemon leaves no process behind: its event encoder, resource tracker and
workers end with it, and leave nothing for a tracker to warn about."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc

from tests.integration.test_decisions_api import DATAFILE
from tests.support.daemon import spawn
from tests.support.redis_server import free_port, redis_server
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has ended


def test_the_event_encoder_ends_when_the_daemon_is_sigkilled(tmp_path: Path) -> None:
    with spawn(tmp_path, "--datafile", str(DATAFILE), "--event-flush-interval", "0.05") as daemon:
        with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
            stub = pb_grpc.TrackingServiceStub(channel)
            stub.Track(pb.TrackRequest(event_key="signup", user_id="u1"), timeout=10)
        deadline = time.monotonic() + 30
        children: set[int] = set()
        while time.monotonic() < deadline and not children:  # delivery starts the encoder
            children = children_of(daemon.popen.pid)
            time.sleep(0.05)
        assert children, "the daemon started no encoder process"
        daemon.popen.send_signal(signal.SIGKILL)
        daemon.popen.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(alive(pid) for pid in children):
            time.sleep(0.1)
        assert not any(alive(pid) for pid in children), children


def test_a_sigkilled_daemon_leaves_no_child_and_no_leak_warning(tmp_path: Path) -> None:
    """Its encoder and multiprocessing's resource tracker end with it, and nothing is left for
    the tracker to clean up: no "leaked semaphore objects" in its log or the next one's."""
    args = ("--datafile", str(DATAFILE), "--event-flush-interval", "0.05")
    with spawn(tmp_path, *args) as daemon:
        with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
            stub = pb_grpc.TrackingServiceStub(channel)
            stub.Track(pb.TrackRequest(event_key="signup", user_id="u1"), timeout=10)
        # Delivered through the encoder: it and multiprocessing's resource tracker (started
        # before it) are both running, so every child is counted.
        events = tmp_path / "events.jsonl"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            events.exists() and '"u1"' in events.read_text()
        ):
            time.sleep(0.05)
        children = children_of(daemon.popen.pid)
        assert children, "the daemon started no encoder process"
        daemon.popen.send_signal(signal.SIGKILL)
        daemon.popen.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(alive(pid) for pid in children):
            time.sleep(0.05)
        assert not any(alive(pid) for pid in children), children
        killed_log = daemon.log_path.read_text()
    assert "leaked" not in killed_log, killed_log

    with spawn(tmp_path, *args) as restarted:
        with grpc.insecure_channel(f"127.0.0.1:{restarted.port}") as channel:
            stub = pb_grpc.TrackingServiceStub(channel)
            stub.Track(pb.TrackRequest(event_key="signup", user_id="u2"), timeout=10)
        assert restarted.stop() == 0
        restarted_log = restarted.log_path.read_text()
    assert "leaked" not in restarted_log, restarted_log


def descendants_of(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        children = children_of(todo.pop())
        found |= children
        todo.extend(children)
    return found


def test_a_sigkilled_supervisor_leaves_no_worker_encoder_or_leak_warning(tmp_path: Path) -> None:
    """`--workers 2`: the workers (which drain on the SIGTERM the kernel sends them), their
    encoders and resource trackers all end with the supervisor."""
    with redis_server(tmp_path / "redis") as redis:
        port = free_port()
        args = ("--listen", f"127.0.0.1:{port}", "--workers", "2", "--datafile", str(DATAFILE))
        args += ("--event-flush-interval", "0.05", "--activation-store", redis.url)
        with spawn(tmp_path / "trackd", *args) as supervisor:
            deadline = time.monotonic() + 30
            tree: set[int] = set()
            while time.monotonic() < deadline and len(tree) < 4:  # 2 workers, 2 encoders
                # New connections reach either worker: each soon has an event to deliver.
                with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                    stub = pb_grpc.TrackingServiceStub(channel)
                    stub.Track(pb.TrackRequest(event_key="signup", user_id="u1"), timeout=10)
                time.sleep(0.1)
                tree = descendants_of(supervisor.popen.pid)
            assert len(tree) >= 4, tree
            supervisor.popen.send_signal(signal.SIGKILL)
            supervisor.popen.wait(timeout=10)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and any(alive(pid) for pid in tree):
                time.sleep(0.05)
            assert not any(alive(pid) for pid in tree), tree
            log = supervisor.log_path.read_text()
    assert "leaked" not in log, log
