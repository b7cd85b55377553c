"""`--outbox-sync`: the PRAGMA each mode puts on the writer connection, and under `normal`
the background fsync of the WAL (`trackd.events.outbox.wal_sync`), driven tick by tick."""

from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.daemon import settings_for
from tests.unit.test_outbox import DATAFILE_PATH, conversions
from trackd.events.outbox import Outbox, schema
from trackd.events.outbox.wal_sync import SYNC_INTERVAL_S, WalSyncer
from trackd.server import running

# PRAGMA synchronous reads back as a number: 1 NORMAL, 2 FULL.
PRAGMA_VALUE = {"full": 2, "normal": 1}


@pytest.mark.parametrize("mode", ["full", "normal"])
async def test_the_daemon_s_writer_connection_runs_the_chosen_synchronous(
    tmp_path: Path, mode: str
) -> None:
    settings = settings_for(tmp_path, datafile=DATAFILE_PATH, outbox_sync=mode)
    async with running(settings) as daemon:
        writer = daemon.outbox._writer  # the connection itself: what SQLite really does
        assert writer is not None
        (value,) = writer._conn.execute("PRAGMA synchronous").fetchone()
        assert value == PRAGMA_VALUE[mode]
        assert (daemon.outbox._wal_syncer is not None) == (mode == "normal")


def test_a_bad_outbox_sync_stops_serve_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trackd", "serve", "--outbox-sync", "fast"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TRACKD_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "trackd: --outbox-sync 'fast': expected one of full, normal"
    ]


class Ticks:
    """A clock for the syncer's thread: it waits in `wait` until the test gives a tick."""

    def __init__(self) -> None:
        self.asked: list[float] = []  # the interval of every wait
        self._given: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._waiting: queue.SimpleQueue[None] = queue.SimpleQueue()

    def wait(self, seconds: float) -> bool:
        self.asked.append(seconds)
        self._waiting.put(None)
        return self._given.get()

    def tick(self) -> None:
        """One interval passes; returns once the thread is back waiting for the next."""
        self._given.put(False)
        self._waiting.get(timeout=30)

    def stop(self) -> None:
        self._given.put(True)

    def started(self) -> None:
        self._waiting.get(timeout=30)


class Fsyncs:
    """os.fsync, noting the inode of each file synced."""

    def __init__(self) -> None:
        self.inodes: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        with self._lock:
            self.inodes.append(os.fstat(fd).st_ino)
        os.fsync(fd)


def test_every_tick_fsyncs_the_wal_past_each_commit_made_before_it(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    conn = schema.connect_writer(path, "NORMAL")
    commits = 0

    def commit() -> None:
        nonlocal commits
        conn.execute(schema.INSERT_ROW, (1, 1, 0, b"x"))
        commits += 1

    ticks, fsyncs = Ticks(), Fsyncs()
    syncer = WalSyncer(path, lambda: commits, wait=ticks.wait, fsync=fsyncs)
    try:
        syncer.start()
        ticks.started()
        wal = os.stat(syncer.wal_path).st_ino
        directory = os.stat(tmp_path).st_ino
        assert fsyncs.inodes == [directory]  # the WAL's directory entry, once, at start
        for _ in range(3):
            commit()
            commit()
            assert syncer.synced_commits == commits - 2
            ticks.tick()
            assert syncer.synced_commits == commits
        assert fsyncs.inodes == [directory, wal, wal, wal]
        ticks.tick()  # nothing committed during this interval: no fsync
        assert syncer.syncs == 3
        # Each tick is at most a second: what `normal` promises a power loss can take.
        assert ticks.asked == [SYNC_INTERVAL_S] * 5
        assert SYNC_INTERVAL_S <= 1.0
        commit()
    finally:
        ticks.stop()
        syncer.stop()
        conn.close()
    # Stopping syncs what was committed since the last tick, then closes the WAL.
    assert syncer.synced_commits == commits
    assert fsyncs.inodes[-1] == wal
    assert not _open_fds_to(syncer.wal_path)


async def test_normal_fsyncs_appended_events_in_the_background(tmp_path: Path) -> None:
    """With the real clock: the commits of appended events are synced by the syncer's own
    thread, while appends go on (a deadline for "eventually", not a timing threshold)."""
    path = tmp_path / "outbox.sqlite3"
    async with Outbox(path, synchronous="NORMAL") as outbox:
        assert outbox.wal_syncs == 0
        for _ in range(3):
            await outbox.append(conversions(50))
        committed = outbox.commits
        assert committed >= 3
        async with asyncio.timeout(30):
            while outbox.synced_commits < committed:
                await outbox.append(conversions(1))  # more writes meanwhile
                await asyncio.sleep(0.05)
        assert outbox.wal_syncs >= 1
        assert _threads_named("trackd-wal-sync") == 1


async def test_normal_stops_its_syncer_at_close_with_every_commit_synced(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path, synchronous="NORMAL")
    await outbox.open()
    await outbox.append(conversions(5))
    await outbox.close()
    assert outbox.synced_commits == outbox.commits >= 1
    assert _threads_named("trackd-wal-sync") == 0
    assert not _open_fds_to(path.with_name(path.name + "-wal"))
    with sqlite3.connect(path) as conn:  # and what was committed is there
        assert schema.count(conn, schema.UNDELIVERED) == 5


async def test_full_needs_no_syncer_every_commit_is_synced_before_its_answer(
    tmp_path: Path,
) -> None:
    async with Outbox(tmp_path / "outbox.sqlite3") as outbox:
        await outbox.append(conversions(5))
        assert outbox.synced_commits == outbox.commits >= 1
        assert outbox.wal_syncs == 0
        assert _threads_named("trackd-wal-sync") == 0


def _threads_named(name: str) -> int:
    return sum(thread.name == name for thread in threading.enumerate())


def _open_fds_to(path: Path) -> list[str]:
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.removesuffix(" (deleted)") == str(path):
            found.append(target)
    return found
