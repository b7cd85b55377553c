"""The durable event outbox: SQLite in WAL mode, written by one thread with group commit.

`append` hands events to the writer thread and returns once they are committed: a
TrackStream batch as its own compact row (its columns, serialized on the event loop), the
records of unary calls to be serialized by the writer into one row shared by every call
in the same transaction. The writer drains every waiting append (and dispatcher
acknowledgement) into one transaction, commits once and wakes all the waiters with one
callback: concurrent RPCs share a commit and a row, and the event loop never touches the
disk. The writer also feeds committed rows to the results counters (`trackd.events.results`),
moving a persisted cursor: when it is idle, and under load once the oldest uncounted commit
is a quarter second old (`writer`).

A row is deleted only when every event in it is delivered (or dead-lettered) *and* the
results cursor has passed it. Counters (`depth`, `stats()`) are kept on the event loop.

Exactly-once producers: an append may carry a `Receipt`, a producer's `(producer_id,
sequence)` with the acknowledgement it got. The writer claims the key in the same
transaction as the batch's row, so a crash never leaves one without the other; a key already
claimed within the dedup window (earlier, or earlier in the same transaction) stores nothing
and gives back the first acknowledgement. Expired receipts are deleted by the writer inside
a write transaction at most once a minute (no commit of their own).

Durability (`--outbox-sync`): with `synchronous="FULL"` every commit is fsynced before its
callers are answered; with `"NORMAL"` a commit is answered once written to the OS, and the
`wal_sync` thread fsyncs the WAL at least once a second (`WalSyncer`).

The parts: `facade` (the `Outbox` callers hold), `operations` (what the event loop asks of
the writer, one dataclass each), `writer` (the thread), `wal_sync` (the fsync thread under
NORMAL), `schema` (tables, statements and connections), `rows` (the values taken in and
handed out).
"""

from trackd.events.outbox.facade import Outbox
from trackd.events.outbox.rows import (
    BatchKey,
    DeadLetter,
    OutboxStats,
    PendingRow,
    Receipt,
    StoredDeadLetter,
)
from trackd.events.outbox.schema import Synchronous, undelivered_in

__all__ = [
    "BatchKey",
    "DeadLetter",
    "Outbox",
    "OutboxStats",
    "PendingRow",
    "Receipt",
    "StoredDeadLetter",
    "Synchronous",
    "undelivered_in",
]
