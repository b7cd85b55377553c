"""SIGKILL in the middle of a file-sink write: the restarted daemon moves the torn line aside,
so every line of events.jsonl parses and every acknowledged event is in it."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import threading
import time
from pathlib import Path

import grpc

from tests.reliability.support import DATAFILE, record
from tests.reliability.test_crash import Ledger, produce
from tests.support.daemon import Process, spawn
from tests.support.polling import eventually
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

KILLS = 3
EVENTS_PER_LIFE = 60_000
PRODUCERS = 2
ARGS = ("--datafile", str(DATAFILE), "--event-batch-size", "1000")
ARGS += ("--event-flush-interval", "0.05")


def tail_is_torn(path: Path) -> bool:
    """The file does not end in a newline: a line is being (or was being) written."""
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            return size > 0 and os.pread(file.fileno(), 1, size - 1) != b"\n"
    except FileNotFoundError:
        return False


def side_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".torn-*"))


def kill_mid_write(process: Process, path: Path, stop: threading.Event) -> None:
    """Watches the file's last byte and SIGKILLs the daemon as soon as a line is half
    written: a multi-megabyte round of batches gives the watcher time to see it. A tail torn
    by the previous life is not this life's write: the watcher waits until the daemon has
    logged that it moved it aside."""
    if tail_is_torn(path):
        while "event_file_torn_line_moved" not in process.log_path.read_text():
            if stop.wait(0.001) or process.popen.poll() is not None:
                return
    while not stop.is_set() and process.popen.poll() is None:
        if tail_is_torn(path):
            process.popen.kill()
            return


async def one_life(process: Process, ledger: Ledger, path: Path, within: float) -> bool:
    """Streams EVENTS_PER_LIFE events, and waits for the watcher to kill the daemon mid-write
    (or `within` seconds, then kills it anyway); returns whether the file was left torn.

    A bounded amount per life: the backlog it leaves keeps the daemon writing for the
    watcher, and intake faster than delivery to a file cannot fill the outbox."""
    last = ledger.next_id + EVENTS_PER_LIFE
    stop = asyncio.Event()
    watching = threading.Event()
    watcher = threading.Thread(target=kill_mid_write, args=(process, path, watching))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{process.port}") as channel:
        stub = pb_grpc.TrackingServiceStub(channel)
        producers = [asyncio.create_task(produce(stub, ledger, stop)) for _ in range(PRODUCERS)]
        watcher.start()
        # poll(), not a signal-0 probe: the watcher's kill leaves a zombie until it is reaped,
        # and a zombie answers signal 0, so an early kill used to hang this wait for 60 s.
        await eventually(lambda: ledger.next_id >= last or process.popen.poll() is not None, 60)
        stop.set()
        await asyncio.to_thread(watcher.join, within)  # it ends when it has killed
        watching.set()
        await asyncio.to_thread(watcher.join)
        process.popen.kill()
        await asyncio.to_thread(process.popen.wait, 10)
        stop.set()
        async with asyncio.timeout(30):
            await asyncio.gather(*producers)
    return tail_is_torn(path)


def read_lines(path: Path) -> tuple[collections.Counter[int], list[int]]:
    """Visitor ids delivered (by count) and the numbers of the lines that do not parse."""
    delivered: collections.Counter[int] = collections.Counter()
    invalid = []
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        try:
            batch = json.loads(line)
        except json.JSONDecodeError:
            invalid.append(number)
            continue
        for visitor in batch["visitors"]:
            delivered[int(visitor["visitor_id"][1:])] += 1
    return delivered, invalid


async def test_a_sigkill_mid_write_leaves_no_invalid_line_and_loses_nothing(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    path = data_dir / "events.jsonl"
    ledger = Ledger()
    torn_kills = 0
    started = time.monotonic()
    for _ in range(KILLS):
        with spawn(data_dir, *ARGS) as process:
            torn_kills += await one_life(process, ledger, path, within=10)
    # The last life only delivers what is left, then stops cleanly.
    with spawn(data_dir, *ARGS) as process:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            delivered, invalid = read_lines(path)
            if invalid or ledger.acked <= delivered.keys():
                break
            await asyncio.sleep(0.25)
        assert process.stop() == 0
    delivered, invalid = read_lines(path)
    set_aside = side_files(path)
    lost = ledger.acked - delivered.keys()
    record(
        "torn_file",
        kills=KILLS,
        kills_mid_write=torn_kills,
        events_acked=len(ledger.acked),
        lines=path.read_bytes().count(b"\n"),
        invalid_lines=len(invalid),
        torn_files=len(set_aside),
        lost=len(lost),
        seconds=round(time.monotonic() - started, 1),
    )
    # Without a kill that tore a line this test would prove nothing.
    assert torn_kills >= 1, "no SIGKILL landed in the middle of a write"
    assert not invalid, f"lines {invalid[:10]} of {path} are not JSON"
    assert not lost, f"{len(lost)} acknowledged events are not in the file: {sorted(lost)[:10]}"
    assert len(set_aside) == torn_kills, set_aside  # one side file per torn line, none lost
    assert not tail_is_torn(path)
    warnings = [
        line
        for log in data_dir.glob("trackd-*.log")
        for line in log.read_text().splitlines()
        if "event_file_torn_line_moved" in line
    ]
    assert len(warnings) == torn_kills, warnings
