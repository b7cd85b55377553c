"""The durable event outbox: SQLite in WAL mode, written by one thread with group commit.

`append` hands events to the writer thread and returns once they are committed: a
TrackStream batch as its own compact row (its columns, serialized on the event loop), the
records of unary calls to be serialized by the writer into one row shared by every call
in the same transaction. The writer drains every waiting append (and dispatcher
acknowledgement) into one transaction, commits once and wakes all the waiters with one
callback: concurrent RPCs share a commit and a row, and the event loop never touches the
disk. When the queue is idle (and at least every quarter second
under load) the writer also feeds committed rows to the results counters
(`trackd.events.results`), moving a persisted cursor in the same transaction.

A row is deleted only when every event in it is delivered (or dead-lettered) *and* the
results cursor has passed it. Counters (`depth`, `stats()`) are kept on the event loop.

Exactly-once producers: an append may carry a `Receipt`, a producer's `(producer_id,
sequence)` with the acknowledgement it got. The writer claims the key in the same
transaction as the batch's row, so a crash never leaves one without the other; a key already
claimed within the dedup window (earlier, or earlier in the same transaction) stores nothing
and gives back the first acknowledgement. Expired receipts are deleted by the writer inside
a write transaction at most once a minute (no commit of their own).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import structlog

from trackd.errors import FailedPrecondition, OutboxFull, Unavailable
from trackd.events import results as results_mod
from trackd.events.records import ConversionColumns, Record, decode_rows, encode_row
from trackd.events.results import ExperimentResults, ResultsConfig, ResultsExperiment

log = structlog.get_logger("trackd.events")

Synchronous = Literal["FULL", "NORMAL"]

_UNDELIVERED: Final = "SELECT COALESCE(SUM(n - sent), 0) FROM outbox"


def undelivered_in(path: Path) -> int:
    """Undelivered events in an outbox file no process has open (0 when there is none)."""
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (count,) = conn.execute(_UNDELIVERED).fetchone()
    except sqlite3.DatabaseError:
        return 0  # not an outbox (yet): nothing of ours to deliver
    finally:
        conn.close()
    return int(count)


_SCHEMA: Final = (
    """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the results cursor relies on it
    created_ms INTEGER NOT NULL,
    n INTEGER NOT NULL,               -- events in the row
    sent INTEGER NOT NULL DEFAULT 0,  -- events delivered or dead-lettered, in order
    fmt INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    status INTEGER,                   -- HTTP status, NULL when the batch could not be built
    reason TEXT NOT NULL,
    n INTEGER NOT NULL,
    body BLOB NOT NULL                -- the Event API batch as sent (or the raw row)
);
CREATE TABLE IF NOT EXISTS receipts (
    producer_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,        -- the uint64 sequence as its signed 64-bit twin
    committed_ms INTEGER NOT NULL,
    ack BLOB NOT NULL,                -- the first commit's acknowledgement (opaque here)
    PRIMARY KEY (producer_id, sequence)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS receipts_by_age ON receipts (committed_ms);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema_version', 1), ('results_cursor', 0);
"""
    + results_mod.SCHEMA
)

# Results are counted when the writer has been idle for _IDLE_S, in steps of about
# _RESULTS_STEP_EVENTS events (a few milliseconds, so an append arriving meanwhile waits
# little). Under sustained load they are counted after a commit only once more than
# _RESULTS_MAX_LAG_EVENTS wait, then at twice the rate of appends, so the backlog stays
# bounded. results() always catches up first.
_IDLE_S: Final = 0.02
_RESULTS_STEP_EVENTS: Final = 4096
_RESULTS_STEP_MAX_ROWS: Final = 1024
_RESULTS_MAX_LAG_EVENTS: Final = 100_000

# `?` is a JSON list of [row_id, sent]: events newly covered, then the rows moved, then the
# rows left with nothing to deliver or count removed.
_ACK_PAIRS: Final = "SELECT value ->> 0 AS id, value ->> 1 AS sent FROM json_each(?)"
_ACKED: Final = (
    "SELECT COALESCE(SUM(MIN(o.n, p.sent) - o.sent), 0)"
    f" FROM outbox AS o JOIN ({_ACK_PAIRS}) AS p ON o.id = p.id WHERE p.sent > o.sent"
)
_ACK_ROWS: Final = (
    f"UPDATE outbox SET sent = MIN(n, p.sent) FROM ({_ACK_PAIRS}) AS p"
    " WHERE outbox.id = p.id AND p.sent > outbox.sent"
)
_DELETE_DELIVERED: Final = (
    "DELETE FROM outbox WHERE id IN (SELECT value ->> 0 FROM json_each(?))"
    " AND sent >= n AND id <= ?"
)

# Claims a producer's key, or (rowcount 0) finds it claimed within the window: a receipt
# older than the window counts as absent and is taken over, so expiry never depends on
# when the last sweep ran.
_CLAIM: Final = (
    "INSERT INTO receipts (producer_id, sequence, committed_ms, ack) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (producer_id, sequence) DO UPDATE"
    " SET committed_ms = excluded.committed_ms, ack = excluded.ack"
    " WHERE receipts.committed_ms <= ?"
)
_FIRST_ACK: Final = "SELECT ack FROM receipts WHERE producer_id = ? AND sequence = ?"
_EXPIRE: Final = "DELETE FROM receipts WHERE committed_ms <= ?"
_EXPIRE_EVERY_S: Final = 60.0

_APPEND: Final = 0  # an encoded row (a TrackStream batch's columns)
_ACK: Final = 1
_RESULTS: Final = 2
_STOP: Final = 3
_APPEND_RECORDS: Final = 4  # records (unary calls) that share their commit's row
_APPENDS: Final = (_APPEND, _APPEND_RECORDS)
_WRITES: Final = (*_APPENDS, _ACK)  # what a write transaction carries


@dataclass(frozen=True, slots=True)
class BatchKey:
    """A producer's name for one TrackStream batch; `sequence` is a uint64."""

    producer_id: str
    sequence: int


@dataclass(frozen=True, slots=True)
class Receipt:
    """A batch's key and the acknowledgement it is given, stored with it; `ack` is opaque
    to the outbox (the tracker encodes it)."""

    key: BatchKey
    ack: bytes


def _signed(sequence: int) -> int:
    """SQLite integers are signed 64-bit: a uint64 at or above 2**63 is stored as its twin."""
    return sequence - (1 << 64) if sequence >= 1 << 63 else sequence


@dataclass(frozen=True, slots=True)
class PendingRow:
    """A committed row with undelivered events, as stored: the dispatcher's encoder process
    decodes it (`trackd.events.rounds`), so the daemon never does."""

    row_id: int
    created_ms: int
    n: int  # events in the row
    sent: int  # events of this row already delivered, from the start
    fmt: int
    body: bytes

    @property
    def records(self) -> tuple[Record, ...]:
        """All of the row's events, decoded (raises on an undecodable row)."""
        return tuple(decode_rows(self.body, self.fmt))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A batch the endpoint refused (a 4xx other than 408/429), or could not be built."""

    status: int | None
    reason: str
    events: int
    body: bytes


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    id: int
    created_ms: int
    status: int | None
    reason: str
    events: int
    body: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth_events: int  # undelivered events, including appends being committed
    oldest_age_s: float | None  # age of the oldest undelivered event
    dead_lettered_events: int  # all time (the dead-letter table)
    delivered_events: int  # since open
    commits: int  # write transactions since open
    duplicate_batches: int = 0  # appends whose receipt was already claimed, since open


class _Settlement:
    """What one writer transaction did, applied to the loop-side counters in one callback."""

    __slots__ = ("appended", "dead_lettered", "delivered", "duplicates", "failed", "futures")

    def __init__(self) -> None:
        self.appended = 0
        self.failed = 0  # events reserved but not stored: a failed write, or duplicates
        self.duplicates = 0  # appends that stored nothing: their receipt was claimed
        self.delivered = 0
        self.dead_lettered = 0
        self.futures: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []


class Outbox:
    """Usage: `async with Outbox(data_dir / "outbox.sqlite3") as outbox: ...`
    (or `await outbox.open()` ... `await outbox.close()`)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_events: int = 1_000_000,
        synchronous: Synchronous = "FULL",
        clock: Callable[[], float] = time.time,
        results_observer: results_mod.CountedObserver | None = None,
        dedup_window: float = 0.0,
    ) -> None:
        """`dedup_window`: seconds a receipt is kept; 0 ignores receipts (stores none)."""
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        if dedup_window < 0:
            raise ValueError("dedup_window must not be negative")
        self._dedup_window_ms = int(dedup_window * 1000)
        self.path = Path(path)
        self.max_events = max_events
        self._synchronous = synchronous
        self._clock = clock
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._closing = False
        self._stopped = False
        self._commit_event = asyncio.Event()
        # Loop-side counters.
        self._reserved = 0  # undelivered + being committed: what max_events bounds
        self._committed = 0  # undelivered and committed: what the dispatcher can read
        self._delivered = 0
        self._dead_lettered = 0
        self._duplicates = 0
        # Writer-thread state.
        self._expired_at = 0.0  # clock() of the last sweep of expired receipts
        self.commits = 0
        self._cursor = 0
        self._max_id = 0
        self._appended = 0  # events the last write transaction added
        self._uncounted = 0  # committed events the results cursor has not passed
        self._counter = results_mod.Counter(results_observer)

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        if self._thread is not None:
            raise RuntimeError("outbox already open")
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._open_files)
        self._thread = threading.Thread(target=self._run, name="trackd-outbox", daemon=True)
        self._thread.start()

    async def __aenter__(self) -> Outbox:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _open_files(self) -> None:
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
            self._open_database()
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def _open_database(self) -> None:
        writer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute(f"PRAGMA synchronous={self._synchronous}")
        writer.execute("PRAGMA busy_timeout=5000")
        writer.executescript(_SCHEMA)
        if self._dedup_window_ms:
            self._expire_receipts(writer)
        (depth,) = writer.execute(_UNDELIVERED).fetchone()
        (max_id,) = writer.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()
        (dead,) = writer.execute("SELECT COALESCE(SUM(n), 0) FROM dead_letters").fetchone()
        (cursor,) = writer.execute("SELECT value FROM meta WHERE key = 'results_cursor'").fetchone()
        (uncounted,) = writer.execute(
            "SELECT COALESCE(SUM(n), 0) FROM outbox WHERE id > ?", (cursor,)
        ).fetchone()
        self._uncounted = int(uncounted)
        self._writer = writer
        self._reserved = self._committed = int(depth)
        self._dead_lettered = int(dead)
        self._cursor = int(cursor)
        self._max_id = max(int(max_id), self._cursor)
        reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        reader.execute("PRAGMA query_only=1")
        reader.execute("PRAGMA busy_timeout=5000")
        self._reader = reader

    async def close(self) -> None:
        """Commits what was appended before, stops the writer and closes the database."""
        if self._thread is None or self._closing:
            return
        self._closing = True
        await self._submit(_STOP)
        await asyncio.to_thread(self._thread.join)
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
        self, records: Sequence[Record] | ConversionColumns, receipt: Receipt | None = None
    ) -> bytes | None:
        """Returns once every record is committed; raises OutboxFull (writing nothing) when
        they would take the outbox past `max_events`.

        With a `receipt` (and a dedup window), its key is claimed in the same transaction,
        even for no records; when the key was already claimed within the window nothing is
        stored and the first receipt's `ack` is returned. Otherwise returns None."""
        n = len(records)
        if not self._dedup_window_ms:
            receipt = None
        if n == 0 and receipt is None:
            return None
        if self._closing or self._loop is None:
            raise Unavailable("the event outbox is closed")
        if self._reserved + n > self.max_events:
            raise OutboxFull(self.max_events)
        future = self._loop.create_future()
        self._reserved += n
        created_ms = int(self._clock() * 1000)
        if isinstance(records, ConversionColumns) or receipt is not None:
            fmt, body = encode_row(records) if n else (0, b"")
            self._queue.put((_APPEND, future, body, n, created_ms, fmt, receipt))
        else:
            # Encoded by the writer, together with the other records of its transaction.
            self._queue.put((_APPEND_RECORDS, future, records, n, created_ms))
        first: bytes | None = await future
        return first

    async def _submit(self, kind: int, *args: Any) -> Any:
        if self._stopped or self._loop is None:
            raise Unavailable("the event outbox is closed")
        future = self._loop.create_future()
        self._queue.put((kind, future, *args))
        return await future

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
            cursor = self._reader.execute(
                "SELECT id, created_ms, n, sent, fmt, body FROM outbox"
                " WHERE id > ? AND sent < n ORDER BY id LIMIT ?",
                (after_id, limit),
            )
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
        self._queue.put((_ACK, future, tuple(progress), dead_letter))
        return future

    async def dead_letters(self, limit: int = 100) -> list[StoredDeadLetter]:
        def fetch() -> list[StoredDeadLetter]:
            with self._reader_lock:
                assert self._reader is not None
                rows = self._reader.execute(
                    "SELECT id, created_ms, status, reason, n, body FROM dead_letters"
                    " ORDER BY id LIMIT ?",
                    (limit,),
                ).fetchall()
            return [StoredDeadLetter(*row) for row in rows]

        return await asyncio.to_thread(fetch)

    async def stats(self) -> OutboxStats:
        def oldest() -> int | None:
            with self._reader_lock:
                assert self._reader is not None
                row = self._reader.execute(
                    "SELECT created_ms FROM outbox WHERE sent < n ORDER BY id LIMIT 1"
                ).fetchone()
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
        if self._closing:
            raise Unavailable("the event outbox is closed")
        raw: results_mod.RawCounts = await self._submit(_RESULTS, experiment.id)
        return results_mod.assemble(raw, config, experiment)

    # --- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        conn = self._writer
        assert conn is not None
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        idle = False
        while True:
            try:
                # With results to count, count them once nothing has arrived for a moment.
                first = get(timeout=0 if idle else _IDLE_S) if self._uncounted > 0 else get()
            except queue.Empty:
                idle = True
                self._count_results(conn, _RESULTS_STEP_EVENTS)
                continue
            idle = False
            ops = [first]
            with contextlib.suppress(queue.Empty):
                while True:
                    ops.append(get_nowait())
            stop = self._process(conn, ops)
            if stop is not None:
                self._shutdown(conn, stop)
                return
            if self._uncounted > _RESULTS_MAX_LAG_EVENTS:
                self._count_results(conn, max(_RESULTS_STEP_EVENTS, 2 * self._appended))

    def _count_results(self, conn: sqlite3.Connection, max_events: int) -> None:
        try:
            self._results_step(conn, max_events)
        except Exception:
            log.exception("results_step_failed")
            time.sleep(_IDLE_S)  # a broken database: do not spin

    def _process(self, conn: sqlite3.Connection, ops: list[tuple[Any, ...]]) -> Any:
        settlement = _Settlement()
        writes = [op for op in ops if op[0] in _WRITES]
        self._appended = 0
        if writes:
            self._write(conn, writes, settlement)
        stop = None
        for op in ops:
            if op[0] == _RESULTS:
                try:
                    while self._results_step(conn, _RESULTS_STEP_EVENTS):
                        pass
                    counts = results_mod.query(conn, op[2])
                    settlement.futures.append((op[1], counts, None))
                except Exception as error:
                    log.exception("results_query_failed")
                    settlement.futures.append((op[1], None, _unavailable(error)))
            elif op[0] == _STOP:
                stop = op[1]
        assert self._loop is not None
        if settlement.futures:
            self._loop.call_soon_threadsafe(self._settle, settlement)
        return stop

    def _write(
        self, conn: sqlite3.Connection, writes: list[tuple[Any, ...]], settlement: _Settlement
    ) -> None:
        done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        appended = delivered = dead = duplicate_events = duplicates = 0
        max_id = self._max_id
        # The records of every unary call in this transaction go into one row: a row costs
        # the writer an INSERT (and a GIL handoff), and the dispatcher, the results counter
        # and the acknowledgements a row each again, however few events it holds.
        shared: list[Record] = []
        shared_since: int | None = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            if self._dedup_window_ms and self._clock() - self._expired_at >= _EXPIRE_EVERY_S:
                self._expire_receipts(conn)
            for op in writes:
                if op[0] == _APPEND_RECORDS:
                    _, future, records, n, created_ms = op
                    shared.extend(records)
                    if shared_since is None:
                        shared_since = created_ms
                    appended += n
                    done.append((future, None, None))
                elif op[0] == _APPEND:
                    _, future, body, n, created_ms, fmt, receipt = op
                    first = None if receipt is None else self._claim(conn, receipt, created_ms)
                    if first is not None:
                        duplicates += 1
                        duplicate_events += n
                    elif n:
                        max_id = self._insert(conn, created_ms, n, fmt, body) or max_id
                        appended += n
                    done.append((future, first, None))
                else:
                    _, future, progress, dead_letter = op
                    acked = self._apply_ack(conn, progress, dead_letter)
                    if dead_letter is None:
                        delivered += acked
                    else:
                        dead += acked
                    done.append((future, acked, None))
            if shared_since is not None:
                fmt, body = encode_row(shared)
                max_id = self._insert(conn, shared_since, len(shared), fmt, body) or max_id
            conn.execute("COMMIT")
        except Exception as error:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            log.exception("outbox_write_failed", operations=len(writes))
            failure = _unavailable(error)
            settlement.failed += sum(op[3] for op in writes if op[0] in _APPENDS)
            settlement.futures.extend((op[1], None, failure) for op in writes)
            return
        self.commits += 1
        self._max_id = max_id
        self._appended = appended
        self._uncounted += appended
        settlement.appended += appended
        settlement.failed += duplicate_events
        settlement.duplicates += duplicates
        settlement.delivered += delivered
        settlement.dead_lettered += dead
        settlement.futures.extend(done)

    @staticmethod
    def _insert(conn: sqlite3.Connection, created_ms: int, n: int, fmt: int, body: bytes) -> int:
        cursor = conn.execute(
            "INSERT INTO outbox (created_ms, n, fmt, body) VALUES (?, ?, ?, ?)",
            (created_ms, n, fmt, body),
        )
        return cursor.lastrowid or 0

    def _claim(self, conn: sqlite3.Connection, receipt: Receipt, now_ms: int) -> bytes | None:
        """Claims the receipt's key (None), or returns the ack it was first claimed with."""
        key = (receipt.key.producer_id, _signed(receipt.key.sequence))
        cutoff = now_ms - self._dedup_window_ms
        if conn.execute(_CLAIM, (*key, now_ms, receipt.ack, cutoff)).rowcount:
            return None
        (ack,) = conn.execute(_FIRST_ACK, key).fetchone()
        return bytes(ack)

    def _expire_receipts(self, conn: sqlite3.Connection) -> None:
        now = self._clock()
        conn.execute(_EXPIRE, (int(now * 1000) - self._dedup_window_ms,))
        self._expired_at = now

    def _apply_ack(
        self,
        conn: sqlite3.Connection,
        progress: Sequence[tuple[int, int]],
        dead_letter: DeadLetter | None,
    ) -> int:
        # Set-based, three statements however many rows: a delivery of unary events can
        # ack a row per event (calls committed one at a time), and each statement costs
        # the writer a GIL handoff.
        furthest: dict[int, int] = {}
        for row_id, sent in progress:
            furthest[row_id] = max(sent, furthest.get(row_id, 0))
        rows = json.dumps(list(furthest.items()))
        (acked,) = conn.execute(_ACKED, (rows,)).fetchone()
        if not acked:
            return 0
        conn.execute(_ACK_ROWS, (rows,))
        conn.execute(_DELETE_DELIVERED, (rows, self._cursor))
        if dead_letter is not None:
            conn.execute(
                "INSERT INTO dead_letters (created_ms, status, reason, n, body)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    int(self._clock() * 1000),
                    dead_letter.status,
                    dead_letter.reason,
                    acked,
                    dead_letter.body,
                ),
            )
        return int(acked)

    def _results_step(self, conn: sqlite3.Connection, max_events: int) -> bool:
        """Counts the next committed rows (about `max_events` events) in one transaction;
        True while more remain."""
        first = self._cursor
        if first >= self._max_id:
            return False
        last = first
        events = 0
        for row_id, n in conn.execute(
            "SELECT id, n FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (first, _RESULTS_STEP_MAX_ROWS),
        ):
            last = row_id
            events += n
            if events >= max_events:
                break
        if last == first:
            return False
        rows = conn.execute(
            "SELECT id, fmt, body FROM outbox WHERE id > ? AND id <= ? ORDER BY id", (first, last)
        ).fetchall()
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._counter.consume(conn, rows)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'results_cursor'", (last,))
            conn.execute("DELETE FROM outbox WHERE id > ? AND id <= ? AND sent >= n", (first, last))
            conn.execute("COMMIT")
        except BaseException:
            self._counter.forget()
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        self.commits += 1
        self._cursor = last
        self._uncounted = 0 if last >= self._max_id else self._uncounted - events
        return last < self._max_id

    def _shutdown(self, conn: sqlite3.Connection, future: asyncio.Future[Any]) -> None:
        error: BaseException | None = None
        try:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
        except Exception as exc:
            error = exc
        self._stopped = True
        settlement = _Settlement()
        settlement.futures.append((future, None, error))
        # Anything queued after the stop (a late dispatcher ack) fails instead of hanging.
        closed = Unavailable("the event outbox is closed")
        with contextlib.suppress(queue.Empty):
            while True:
                op = self._queue.get_nowait()
                settlement.futures.append((op[1], None, closed))
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._settle, settlement)

    # --- back on the event loop -----------------------------------------------------------

    def _settle(self, settlement: _Settlement) -> None:
        self._reserved -= settlement.failed + settlement.delivered + settlement.dead_lettered
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


def _unavailable(error: BaseException) -> Unavailable:
    failure = Unavailable(f"the event outbox could not be written: {error}")
    failure.__cause__ = error
    return failure


__all__ = [
    "BatchKey",
    "DeadLetter",
    "Outbox",
    "OutboxStats",
    "PendingRow",
    "Receipt",
    "StoredDeadLetter",
]
