"""`WalSyncer`: under `synchronous=NORMAL`, the thread that makes commits durable on disk at
least once a second.

With `synchronous=NORMAL` in WAL mode a commit is a `write()` of its frames to the `-wal`
file and no fsync: it is in the OS page cache, so a killed trackd (SIGKILL, a crash) loses
nothing, but a power loss or a kernel crash can lose what the disk has not been given yet.
SQLite fsyncs the WAL only at a checkpoint, and a checkpoint makes no progress (and syncs
nothing) while a reader's snapshot holds back the frames it would copy. So this thread
fsyncs the `-wal` file itself, once per interval, as Redis' `appendfsync everysec`: an
fsync of any descriptor of the file flushes every frame written to it before the call, by
any connection, and takes no SQLite lock, so neither the writer thread nor the readers wait
for it, and the event loop never sees it.

What it covers is counted in writer commits: `commits()` is read before each fsync, so once
the fsync returns every commit counted then is on disk (`synced_commits`). The `-wal` file
keeps its inode while trackd has the database open: SQLite rewrites it from the start after
a checkpoint and deletes it only when the last connection closes. The syncer is stopped
after the writer, with one last fsync, so a clean shutdown leaves every commit on disk
whether or not the writer's final checkpoint completed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

import structlog

log = structlog.get_logger("trackd.events")

SYNC_INTERVAL_S: Final = 1.0  # the most a power loss can take of acknowledged events


class WalSyncer:
    """`start()`, then `stop()` before the database is closed.

    `wait(seconds)` is how the thread waits between syncs; it returns True once `stop()` has
    been called. The default waits on a real clock; tests drive the ticks themselves."""

    def __init__(
        self,
        database: Path,
        commits: Callable[[], int],
        *,
        interval: float = SYNC_INTERVAL_S,
        wait: Callable[[float], bool] | None = None,
        fsync: Callable[[int], None] = os.fsync,
    ) -> None:
        self.wal_path = database.with_name(database.name + "-wal")
        self._commits = commits
        self._interval = interval
        self._stopping = threading.Event()
        self._wait = wait or self._stopping.wait
        self._fsync = fsync
        self._fd: int | None = None
        self._thread: threading.Thread | None = None
        self.syncs = 0  # fsyncs of the WAL since start
        self.synced_commits = 0  # writer commits known to be on disk

    def start(self) -> None:
        """Opens the `-wal` file (the writer's connection has created it) and makes its
        directory entry durable, then starts the thread."""
        self._fd = os.open(self.wal_path, os.O_RDONLY)
        # SQLite syncs the directory of a new WAL at its first sync of it, which under
        # NORMAL is the first checkpoint: until then a power loss could lose the file itself.
        directory = os.open(self.wal_path.parent, os.O_RDONLY)
        try:
            self._fsync(directory)
        finally:
            os.close(directory)
        self.synced_commits = self._commits()
        self._thread = threading.Thread(target=self._run, name="trackd-wal-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ends the thread (waiting for an fsync in progress), syncs what was committed
        since, and closes the file."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._fd is not None:
            try:
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = None

    def _run(self) -> None:
        while not self._wait(self._interval):
            try:
                self.sync()
            except OSError:
                # A failing disk: the writer's next commit or checkpoint meets it too and
                # fails its callers; this thread keeps trying each interval.
                log.exception("outbox_wal_sync_failed")

    def sync(self) -> None:
        """Fsyncs the WAL if anything was committed since the last sync."""
        committed = self._commits()
        if committed == self.synced_commits or self._fd is None:
            return
        self._fsync(self._fd)
        self.syncs += 1
        self.synced_commits = committed
