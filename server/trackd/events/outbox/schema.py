"""The outbox's SQLite database: its tables, the statements run on them, its connections."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final, Literal

from trackd.events import results

Synchronous = Literal["FULL", "NORMAL"]

SCHEMA: Final = (
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
    + results.SCHEMA
)

UNDELIVERED: Final = "SELECT COALESCE(SUM(n - sent), 0) FROM outbox"
DEAD_LETTERED: Final = "SELECT COALESCE(SUM(n), 0) FROM dead_letters"
MAX_ID: Final = "SELECT COALESCE(MAX(id), 0) FROM outbox"
RESULTS_CURSOR: Final = "SELECT value FROM meta WHERE key = 'results_cursor'"
UNCOUNTED: Final = "SELECT COALESCE(SUM(n), 0) FROM outbox WHERE id > ?"

INSERT_ROW: Final = "INSERT INTO outbox (created_ms, n, fmt, body) VALUES (?, ?, ?, ?)"
INSERT_DEAD_LETTER: Final = (
    "INSERT INTO dead_letters (created_ms, status, reason, n, body) VALUES (?, ?, ?, ?, ?)"
)

# `?` is a JSON list of [row_id, sent]: events newly covered, then the rows moved, then the
# rows left with nothing to deliver or count removed.
_ACK_PAIRS: Final = "SELECT value ->> 0 AS id, value ->> 1 AS sent FROM json_each(?)"
ACKED: Final = (
    "SELECT COALESCE(SUM(MIN(o.n, p.sent) - o.sent), 0)"
    f" FROM outbox AS o JOIN ({_ACK_PAIRS}) AS p ON o.id = p.id WHERE p.sent > o.sent"
)
ACK_ROWS: Final = (
    f"UPDATE outbox SET sent = MIN(n, p.sent) FROM ({_ACK_PAIRS}) AS p"
    " WHERE outbox.id = p.id AND p.sent > outbox.sent"
)
DELETE_DELIVERED: Final = (
    "DELETE FROM outbox WHERE id IN (SELECT value ->> 0 FROM json_each(?))"
    " AND sent >= n AND id <= ?"
)

# The results cursor's steps: the next rows' sizes, their bodies, then moving the cursor and
# deleting the rows it passed that have nothing left to deliver.
NEXT_ROWS: Final = "SELECT id, n FROM outbox WHERE id > ? ORDER BY id LIMIT ?"
ROWS_BETWEEN: Final = "SELECT id, fmt, body FROM outbox WHERE id > ? AND id <= ? ORDER BY id"
MOVE_CURSOR: Final = "UPDATE meta SET value = ? WHERE key = 'results_cursor'"
DELETE_COUNTED: Final = "DELETE FROM outbox WHERE id > ? AND id <= ? AND sent >= n"

# Claims a producer's key, or (rowcount 0) finds it claimed within the window: a receipt
# older than the window counts as absent and is taken over, so expiry never depends on
# when the last sweep ran.
CLAIM: Final = (
    "INSERT INTO receipts (producer_id, sequence, committed_ms, ack) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (producer_id, sequence) DO UPDATE"
    " SET committed_ms = excluded.committed_ms, ack = excluded.ack"
    " WHERE receipts.committed_ms <= ?"
)
FIRST_ACK: Final = "SELECT ack FROM receipts WHERE producer_id = ? AND sequence = ?"
EXPIRE_RECEIPTS: Final = "DELETE FROM receipts WHERE committed_ms <= ?"

# The dispatcher's and the operator's reads.
PENDING: Final = (
    "SELECT id, created_ms, n, sent, fmt, body FROM outbox"
    " WHERE id > ? AND sent < n ORDER BY id LIMIT ?"
)
OLDEST_PENDING_MS: Final = "SELECT created_ms FROM outbox WHERE sent < n ORDER BY id LIMIT 1"
DEAD_LETTERS: Final = (
    "SELECT id, created_ms, status, reason, n, body FROM dead_letters ORDER BY id LIMIT ?"
)


def connect_writer(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    """The one writing connection (WAL, autocommit: transactions are explicit), with the
    schema created."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


def connect_reader(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA query_only=1")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def count(conn: sqlite3.Connection, query: str, *args: object) -> int:
    (value,) = conn.execute(query, args).fetchone()
    return int(value)


def undelivered_in(path: Path) -> int:
    """Undelivered events in an outbox file no process has open (0 when there is none)."""
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return count(conn, UNDELIVERED)
    except sqlite3.DatabaseError:
        return 0  # not an outbox (yet): nothing of ours to deliver
    finally:
        conn.close()
