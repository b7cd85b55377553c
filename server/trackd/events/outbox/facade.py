"""`Outbox`, what the rest of trackd holds: appends and acknowledgements handed to the writer
thread (`trackd.events.outbox.writer`), reads on a connection of their own, and the counters
kept on the event loop."""

from __future__ import annotations

import asyncio
import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from trackd.errors import FailedPrecondition, OutboxFull, Unavailable
from trackd.events import results
from trackd.events.outbox import schema
from trackd.events.outbox.operations import (
    Ack,
    AppendRecords,
    AppendRow,
    CountResults,
    Operation,
    Settlement,
    Stop,
)
from trackd.events.outbox.rows import (
    DeadLetter,
    OutboxStats,
    PendingRow,
    Receipt,
    StoredDeadLetter,
)
from trackd.events.outbox.wal_sync import WalSyncer
from trackd.events.outbox.writer import Writer
from trackd.events.records import ConversionColumns, OutboxRecord, encode_row, event_count
from trackd.events.results import ExperimentResults, ResultsConfig, ResultsExperiment


class Outbox:
    """Usage: `async with Outbox(data_dir / "outbox.sqlite3") as outbox: ...`
    (or `await outbox.open()` ... `await outbox.close()`)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_events: int = 1_000_000,
        synchronous: schema.Synchronous = "FULL",
        clock: Callable[[], float] = time.time,
        results_observer: results.CountedObserver | None = None,
        dedup_window: float = 0.0,
    ) -> None:
        """`synchronous`: FULL fsyncs every commit before it is acknowledged; NORMAL does not,
        and a `WalSyncer` thread fsyncs the WAL at least once a second instead.
        `dedup_window`: seconds a receipt is kept; 0 ignores receipts (stores none)."""
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        if dedup_window < 0:
            raise ValueError("dedup_window must not be negative")
        self.path = Path(path)
        self.max_events = max_events
        self._synchronous = synchronous
        self._clock = clock
        self._results_observer = results_observer
        self._dedup_window_ms = int(dedup_window * 1000)
        self._operations: queue.SimpleQueue[Operation] = queue.SimpleQueue()
        self._writer: Writer | None = None
        self._wal_syncer: WalSyncer | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._closing = False
        self._commit_event = asyncio.Event()
        # Loop-side counters.
        self._reserved = 0  # undelivered + being committed: what max_events bounds
        self._committed = 0  # undelivered and committed: what the dispatcher can read
        self._delivered = 0
        self._dead_lettered = 0
        self._duplicates = 0

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        if self._thread is not None:
            raise RuntimeError("outbox already open")
        self._loop = asyncio.get_running_loop()
        writer = await asyncio.to_thread(self._open_files)
        self._writer = writer
        self._thread = threading.Thread(target=writer.run, name="trackd-outbox", daemon=True)
        self._thread.start()

    async def __aenter__(self) -> Outbox:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _open_files(self) -> Writer:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FailedPrecondition(
                f"the event outbox {self.path} is in use by another process"
            ) from None
        try:
            writer = self._open_database()
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd
        return writer

    def _open_database(self) -> Writer:
        conn = schema.connect_writer(self.path, self._synchronous)
        try:
            self._reserved = self._committed = schema.count(conn, schema.UNDELIVERED)
            self._dead_lettered = schema.count(conn, schema.DEAD_LETTERED)
            loop = self._loop
            assert loop is not None
            writer = Writer(
                conn,
                self._operations,
                lambda settlement: loop.call_soon_threadsafe(self._settle, settlement),
                clock=self._clock,
                dedup_window_ms=self._dedup_window_ms,
                results_observer=self._results_observer,
            )
            self._reader = schema.connect_reader(self.path)
            if self._synchronous == "NORMAL":
                syncer = WalSyncer(self.path, lambda: writer.commits)
                syncer.start()
                self._wal_syncer = syncer
        except BaseException:
            self._close_reader()
            conn.close()
            raise
        return writer

    async def close(self) -> None:
        """Commits what was appended before, stops the writer and closes the database."""
        if self._thread is None or self._closing:
            return
        self._closing = True
        await self._submit(Stop(self._new_future()))
        await asyncio.to_thread(self._thread.join)
        if self._wal_syncer is not None:
            await asyncio.to_thread(self._wal_syncer.stop)
        await asyncio.to_thread(self._close_reader)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _close_reader(self) -> None:
        # Under the lock: a read whose caller was cancelled still runs in its thread, and
        # closing the connection under a running statement crashes the process.
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    @property
    def commits(self) -> int:
        """Write transactions (appends, acknowledgements, results steps) since open."""
        return 0 if self._writer is None else self._writer.commits

    @property
    def wal_syncs(self) -> int:
        """Background fsyncs of the WAL since open (`synchronous="NORMAL"` only)."""
        return 0 if self._wal_syncer is None else self._wal_syncer.syncs

    @property
    def synced_commits(self) -> int:
        """Commits known to be on disk: all of them under FULL (each is synced before it is
        acknowledged), under NORMAL those the last background fsync covered."""
        if self._wal_syncer is None:
            return self.commits
        return self._wal_syncer.synced_commits

    # --- the acknowledgement path ---------------------------------------------------------

    @property
    def depth(self) -> int:
        """Undelivered events, counting appends not yet committed."""
        return self._reserved

    @property
    def undelivered(self) -> int:
        """Committed events not yet delivered or dead-lettered."""
        return self._committed

    def commit_signal(self) -> asyncio.Event:
        """An event set by the next commit that adds events."""
        return self._commit_event

    async def append(
        self, records: Sequence[OutboxRecord] | ConversionColumns, receipt: Receipt | None = None
    ) -> bytes | None:
        """Returns once every record is committed; raises OutboxFull (writing nothing) when
        they would take the outbox past `max_events`.

        With a `receipt` (and a dedup window), its key is claimed in the same transaction,
        even for no records; when the key was already claimed within the window nothing is
        stored and the first receipt's `ack` is returned. Otherwise returns None."""
        # Events, not records: a Decide call's are one record (`DecisionEvents`).
        n = len(records) if isinstance(records, ConversionColumns) else event_count(records)
        if not self._dedup_window_ms:
            receipt = None
        if n == 0 and receipt is None:
            return None
        if self._closing or self._loop is None:
            raise Unavailable("the event outbox is closed")
        if self._reserved + n > self.max_events:
            raise OutboxFull(self.max_events)
        self._reserved += n
        created_ms = int(self._clock() * 1000)
        if isinstance(records, ConversionColumns) or receipt is not None:
            fmt, body = encode_row(records) if n else (0, b"")
            row: asyncio.Future[bytes | None] = self._loop.create_future()
            self._operations.put(AppendRow(row, body, n, created_ms, fmt, receipt))
            return await row
        # Encoded by the writer, together with the other records of its transaction.
        shared: asyncio.Future[None] = self._loop.create_future()
        self._operations.put(AppendRecords(shared, records, n, created_ms))
        await shared
        return None

    @property
    def _stopped(self) -> bool:
        return self._loop is None or (self._writer is not None and self._writer.stopped)

    def _new_future(self) -> asyncio.Future[None]:
        assert self._loop is not None
        return self._loop.create_future()

    async def _submit(self, operation: Stop | CountResults) -> object:
        if self._stopped:
            raise Unavailable("the event outbox is closed")
        self._operations.put(operation)
        return await operation.future

    # --- the dispatcher's side ------------------------------------------------------------

    async def read(
        self, after_id: int, limit: int, max_events: int | None = None
    ) -> list[PendingRow]:
        """Rows with undelivered events and an id above `after_id`, oldest first: at most
        `limit` rows, and no more once they hold `max_events` undelivered events."""
        return await asyncio.to_thread(self._read, after_id, limit, max_events)

    def _read(self, after_id: int, limit: int, max_events: int | None) -> list[PendingRow]:
        with self._reader_lock:
            assert self._reader is not None
            cursor = self._reader.execute(schema.PENDING, (after_id, limit))
            if max_events is None:
                rows = cursor.fetchall()
            else:
                # Stepped one row at a time: a row holds the unary events of one commit (one
                # or hundreds) or a whole stream batch, so enough rows for one delivery is
                # known only while reading them.
                rows = []
                for row in cursor:
                    rows.append(row)
                    max_events -= row[2] - row[3]
                    if max_events <= 0:
                        break
                cursor.close()
        return [PendingRow(*row) for row in rows]

    def ack(
        self, progress: Sequence[tuple[int, int]], dead_letter: DeadLetter | None = None
    ) -> asyncio.Future[int]:
        """Records that each `(row_id, sent)` row has its first `sent` events delivered (or,
        with `dead_letter`, refused and stored there). Queued at once (the write happens even
        if the caller is cancelled); the future gives how many events were newly
        acknowledged, so a repeated ack counts nothing twice."""
        if self._stopped or self._loop is None:
            raise Unavailable("the event outbox is closed")
        future: asyncio.Future[int] = self._loop.create_future()
        self._operations.put(Ack(future, tuple(progress), dead_letter))
        return future

    async def dead_letters(self, limit: int = 100) -> list[StoredDeadLetter]:
        def fetch() -> list[StoredDeadLetter]:
            with self._reader_lock:
                assert self._reader is not None
                rows = self._reader.execute(schema.DEAD_LETTERS, (limit,)).fetchall()
            return [StoredDeadLetter(*row) for row in rows]

        return await asyncio.to_thread(fetch)

    async def stats(self) -> OutboxStats:
        def oldest() -> int | None:
            with self._reader_lock:
                assert self._reader is not None
                row = self._reader.execute(schema.OLDEST_PENDING_MS).fetchone()
            return None if row is None else int(row[0])

        oldest_ms = await asyncio.to_thread(oldest)
        age = None if oldest_ms is None else max(0.0, self._clock() - oldest_ms / 1000)
        return OutboxStats(
            self._reserved,
            age,
            self._dead_lettered,
            self._delivered,
            self.commits,
            self._duplicates,
        )

    # --- results --------------------------------------------------------------------------

    async def results(
        self, config: ResultsConfig, experiment: ResultsExperiment
    ) -> ExperimentResults:
        """Counts for one experiment, including every event committed before this call.

        `config` and `experiment` are the live `ProjectConfig` and its `Experiment`."""
        if self._closing or self._loop is None:
            raise Unavailable("the event outbox is closed")
        counted: asyncio.Future[results.RawCounts] = self._loop.create_future()
        await self._submit(CountResults(counted, experiment.id))
        return results.assemble(counted.result(), config, experiment)

    # --- back on the event loop -----------------------------------------------------------

    def _settle(self, settlement: Settlement) -> None:
        self._reserved -= settlement.released + settlement.delivered + settlement.dead_lettered
        self._committed += settlement.appended - settlement.delivered - settlement.dead_lettered
        self._delivered += settlement.delivered
        self._dead_lettered += settlement.dead_lettered
        self._duplicates += settlement.duplicates
        for future, result, error in settlement.futures:
            if future.done():  # the caller was cancelled; its write still stands
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
        if settlement.appended:
            event, self._commit_event = self._commit_event, asyncio.Event()
            event.set()
