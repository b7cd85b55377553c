"""The outbox's writer thread: every write, in group-committed transactions, and the results
counters fed from committed rows.

The thread drains every waiting operation into one round: the writes (appends and
dispatcher acknowledgements) share one transaction and one commit (unary appends alone are
one INSERT, its own transaction), then results queries and a stop are answered, and the
event loop hears of it all in one callback (a `Settlement`).

Results are counted in steps of their own transaction that move a persisted cursor. When no
operation has arrived for `_IDLE_S`, in steps of about `_RESULTS_STEP_EVENTS` events (a few
milliseconds, so an append arriving meanwhile waits little). Under load that never lets the
writer idle, once the oldest uncounted commit is `_RESULTS_MAX_LAG_S` old, after each commit
at twice the rate of appends until caught up: the counters, and the fleet-wide results
published from them, trail the commits by well under a second at any load, and the backlog
of rows kept for counting is bounded by as much time of appends. `results()` always
catches up first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import structlog

from trackd.errors import Unavailable
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
    Write,
)
from trackd.events.outbox.rows import DeadLetter, Receipt
from trackd.events.records import OutboxRecord, encode_row

log = structlog.get_logger("trackd.events")

_IDLE_S: Final = 0.02
_RESULTS_STEP_EVENTS: Final = 4096
_RESULTS_STEP_MAX_ROWS: Final = 1024
_RESULTS_MAX_LAG_S: Final = 0.25
_KNOWN_ROWS_KEPT: Final = 4096
# Receipts past the dedup window are deleted inside a write transaction at most this often
# (a receipt past the window counts as absent before it is deleted anyway).
_EXPIRE_RECEIPTS_EVERY_S: Final = 60.0


class Writer:
    """Owns the writing connection; `run` is the thread's body."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        operations: queue.SimpleQueue[Operation],
        settle: Callable[[Settlement], object],
        *,
        clock: Callable[[], float],
        dedup_window_ms: int,
        results_observer: results.CountedObserver | None,
    ) -> None:
        self._conn = conn
        self._operations = operations
        self._settle = settle  # called on the writer thread: must hand over thread-safely
        self._clock = clock
        self._dedup_window_ms = dedup_window_ms
        self._counter = results.Counter(results_observer)
        self.commits = 0
        self.stopped = False  # set before the last operations are failed: see `_shutdown`
        self._cursor = schema.count(conn, schema.RESULTS_CURSOR)
        self._max_id = max(schema.count(conn, schema.MAX_ID), self._cursor)
        self._uncounted = schema.count(conn, schema.UNCOUNTED, self._cursor)
        # When the oldest uncounted commit was made (monotonic), None when all are counted.
        self._uncounted_since = time.monotonic() if self._uncounted else None
        self._appended = 0  # events the last write transaction added
        self._receipts_expired_at = 0.0
        # The records of the rows this writer encoded itself and has not counted yet, by row
        # id: the counter reads them instead of unpickling the row it just pickled. A Decide
        # of 50 flags makes rows of about 50 events a call; decoding them cost the writer
        # thread, holding the GIL the event loop needs, ~0.5 us an event (CPU time, 2 busy
        # shared cores). Bounded by the rows of `_RESULTS_MAX_LAG_S` of appends; past
        # `_KNOWN_ROWS_KEPT` (counting failing), rows are decoded again as before.
        self._known: dict[int, Sequence[OutboxRecord]] = {}
        if dedup_window_ms:
            self._expire_receipts()

    def run(self) -> None:
        get = self._operations.get
        get_nowait = self._operations.get_nowait
        idle = False
        while True:
            try:
                # With results to count, count them once nothing has arrived for a moment.
                first = get(timeout=0 if idle else _IDLE_S) if self._uncounted > 0 else get()
            except queue.Empty:
                idle = True
                self._count_results(_RESULTS_STEP_EVENTS)
                continue
            idle = False
            operations = [first]
            with contextlib.suppress(queue.Empty):
                while True:
                    operations.append(get_nowait())
            stop = self._process(operations)
            if stop is not None:
                self._shutdown(stop)
                return
            since = self._uncounted_since
            if since is not None and time.monotonic() - since >= _RESULTS_MAX_LAG_S:
                self._count_results(max(_RESULTS_STEP_EVENTS, 2 * self._appended))

    def _count_results(self, max_events: int) -> None:
        try:
            self._results_step(max_events)
        except Exception:
            log.exception("results_step_failed")
            time.sleep(_IDLE_S)  # a broken database: do not spin

    def _process(self, operations: list[Operation]) -> Stop | None:
        settlement = Settlement()
        writes = [op for op in operations if isinstance(op, AppendRow | AppendRecords | Ack)]
        self._appended = 0
        if writes:
            self._write(writes, settlement)
        stop = None
        for op in operations:
            match op:
                case CountResults(future, experiment_id):
                    try:
                        while self._results_step(_RESULTS_STEP_EVENTS):
                            pass
                        counts = results.query(self._conn, experiment_id)
                        settlement.futures.append((future, counts, None))
                    except Exception as error:
                        log.exception("results_query_failed")
                        settlement.futures.append((future, None, _unavailable(error)))
                case Stop():
                    stop = op
        if settlement.futures:
            self._settle(settlement)
        return stop

    def _write(self, writes: Sequence[Write], settlement: Settlement) -> None:
        conn = self._conn
        done: list[tuple[asyncio.Future[Any], object, None]] = []
        appended = delivered = dead = released = duplicates = 0
        max_id = self._max_id
        # The records of every unary call in this transaction go into one row: a row costs
        # the writer an INSERT (and a GIL handoff), and the dispatcher, the results counter
        # and the acknowledgements a row each again, however few events it holds.
        shared: list[OutboxRecord] = []
        shared_events = 0  # not len(shared): a DecisionEvents record holds many
        shared_since: int | None = None
        expire = bool(self._dedup_window_ms) and (
            self._clock() - self._receipts_expired_at >= _EXPIRE_RECEIPTS_EVERY_S
        )
        # Unary calls' records alone make one INSERT, which SQLite commits (and syncs) as a
        # transaction of its own: no BEGIN and COMMIT around it. Each statement hands the
        # GIL to the event loop and waits to get it back; under bench_decide most rounds
        # are such, and BEGIN cost the writer ~21 us CPU a round where it costs ~7 alone.
        # A transaction left open (only if a ROLLBACK itself failed) would hold a bare INSERT
        # uncommitted while its callers were answered: BEGIN then fails the round instead.
        explicit = (
            expire or conn.in_transaction or not all(isinstance(op, AppendRecords) for op in writes)
        )
        try:
            if explicit:
                conn.execute("BEGIN IMMEDIATE")
            if expire:
                self._expire_receipts()
            for op in writes:
                match op:
                    case AppendRecords(future, records, n, created_ms):
                        shared.extend(records)
                        shared_events += n
                        if shared_since is None:
                            shared_since = created_ms
                        appended += n
                        done.append((future, None, None))
                    case AppendRow(future, body, n, created_ms, fmt, receipt):
                        first = None if receipt is None else self._claim(receipt, created_ms)
                        if first is not None:
                            duplicates += 1
                            released += n
                        elif n:
                            max_id = self._insert(created_ms, n, fmt, body) or max_id
                            appended += n
                        done.append((future, first, None))
                    case Ack(future, progress, dead_letter):
                        acked = self._apply_ack(progress, dead_letter)
                        if dead_letter is None:
                            delivered += acked
                        else:
                            dead += acked
                        done.append((future, acked, None))
            shared_id = 0
            if shared_since is not None:
                fmt, body = encode_row(shared)
                shared_id = self._insert(shared_since, shared_events, fmt, body)
                max_id = shared_id or max_id
            if explicit:
                conn.execute("COMMIT")
        except Exception as error:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            log.exception("outbox_write_failed", operations=len(writes))
            failure = _unavailable(error)
            settlement.released += sum(
                op.n for op in writes if isinstance(op, AppendRow | AppendRecords)
            )
            settlement.futures.extend((op.future, None, failure) for op in writes)
            return
        self.commits += 1
        if shared_id and len(self._known) < _KNOWN_ROWS_KEPT:
            self._known[shared_id] = shared  # committed: the row holds exactly these
        self._max_id = max_id
        self._appended = appended
        if appended and self._uncounted_since is None:
            self._uncounted_since = time.monotonic()
        self._uncounted += appended
        settlement.appended += appended
        settlement.released += released
        settlement.duplicates += duplicates
        settlement.delivered += delivered
        settlement.dead_lettered += dead
        settlement.futures.extend(done)

    def _insert(self, created_ms: int, n: int, fmt: int, body: bytes) -> int:
        return self._conn.execute(schema.INSERT_ROW, (created_ms, n, fmt, body)).lastrowid or 0

    def _claim(self, receipt: Receipt, now_ms: int) -> bytes | None:
        """Claims the receipt's key (None), or returns the ack it was first claimed with."""
        key = receipt.key.stored
        cutoff = now_ms - self._dedup_window_ms
        if self._conn.execute(schema.CLAIM, (*key, now_ms, receipt.ack, cutoff)).rowcount:
            return None
        (ack,) = self._conn.execute(schema.FIRST_ACK, key).fetchone()
        return bytes(ack)

    def _expire_receipts(self) -> None:
        now = self._clock()
        self._conn.execute(schema.EXPIRE_RECEIPTS, (int(now * 1000) - self._dedup_window_ms,))
        self._receipts_expired_at = now

    def _apply_ack(
        self, progress: Sequence[tuple[int, int]], dead_letter: DeadLetter | None
    ) -> int:
        # Set-based, three statements however many rows: a delivery of unary events can
        # ack a row per event (calls committed one at a time), and each statement costs
        # the writer a GIL handoff.
        furthest: dict[int, int] = {}
        for row_id, sent in progress:
            furthest[row_id] = max(sent, furthest.get(row_id, 0))
        rows = json.dumps(list(furthest.items()))
        conn = self._conn
        acked = schema.count(conn, schema.ACKED, rows)
        if not acked:
            return 0
        conn.execute(schema.ACK_ROWS, (rows,))
        # Only rows results have counted go here (the results step deletes the others as it
        # passes them), and under load acks mostly come first: then there is none to try.
        if min(furthest) <= self._cursor:
            conn.execute(schema.DELETE_DELIVERED, (rows, self._cursor))
        if dead_letter is not None:
            conn.execute(
                schema.INSERT_DEAD_LETTER,
                (
                    int(self._clock() * 1000),
                    dead_letter.status,
                    dead_letter.reason,
                    acked,
                    dead_letter.body,
                ),
            )
        return acked

    def _results_step(self, max_events: int) -> bool:
        """Counts the next committed rows (about `max_events` events) in one transaction;
        True while more remain."""
        conn = self._conn
        first = self._cursor
        if first >= self._max_id:
            return False
        last = first
        events = 0
        for row_id, n in conn.execute(schema.NEXT_ROWS, (first, _RESULTS_STEP_MAX_ROWS)):
            last = row_id
            events += n
            if events >= max_events:
                break
        if last == first:
            return False
        rows = conn.execute(schema.ROWS_BETWEEN, (first, last)).fetchall()
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._counter.consume(conn, rows, self._known)
            conn.execute(schema.MOVE_CURSOR, (last,))
            conn.execute(schema.DELETE_COUNTED, (first, last))
            conn.execute("COMMIT")
        except BaseException:
            self._counter.forget()
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        known = self._known
        if known:
            for row_id, _, _ in rows:
                known.pop(row_id, None)
        self.commits += 1
        self._cursor = last
        if last >= self._max_id:
            self._uncounted = 0
            self._uncounted_since = None
        else:
            self._uncounted -= events
        return last < self._max_id

    def _shutdown(self, stop: Stop) -> None:
        error: BaseException | None = None
        try:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
        except Exception as exc:
            error = exc
        self.stopped = True
        settlement = Settlement()
        settlement.futures.append((stop.future, None, error))
        # Anything queued after the stop (a late dispatcher ack) fails instead of hanging.
        closed = Unavailable("the event outbox is closed")
        with contextlib.suppress(queue.Empty):
            while True:
                settlement.futures.append((self._operations.get_nowait().future, None, closed))
        self._settle(settlement)


def _unavailable(error: BaseException) -> Unavailable:
    failure = Unavailable(f"the event outbox could not be written: {error}")
    failure.__cause__ = error
    return failure
