"""What the outbox takes in and hands out: producers' receipts, pending rows, dead letters,
stats."""

from __future__ import annotations

from dataclasses import dataclass

from trackd.events.records import Record, decode_rows


@dataclass(frozen=True, slots=True)
class BatchKey:
    """A producer's name for one TrackStream batch; `sequence` is a uint64."""

    producer_id: str
    sequence: int

    @property
    def stored(self) -> tuple[str, int]:
        """The key as SQLite stores it: its integers are signed 64-bit, so a sequence at or
        above 2**63 is stored as its negative twin."""
        sequence = self.sequence
        return self.producer_id, sequence - (1 << 64) if sequence >= 1 << 63 else sequence


@dataclass(frozen=True, slots=True)
class Receipt:
    """A batch's key and the acknowledgement it is given, stored with it; `ack` is opaque
    to the outbox (the tracker encodes it)."""

    key: BatchKey
    ack: bytes


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
