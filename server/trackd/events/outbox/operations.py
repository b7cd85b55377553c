"""What the event loop asks of the writer thread, one frozen dataclass per operation, and
what the writer hands back: a `Settlement` per round of operations."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trackd.events.outbox.rows import DeadLetter, Receipt
from trackd.events.records import OutboxRecord
from trackd.events.results import RawCounts


@dataclass(frozen=True, slots=True)
class AppendRow:
    """A row encoded on the event loop (a TrackStream batch's columns); with a receipt, the
    key is claimed first and a claimed key stores nothing. The future gives the first ack
    of a claimed key, else None."""

    future: asyncio.Future[bytes | None]
    body: bytes
    n: int  # events in the row (0: only the receipt)
    created_ms: int
    fmt: int
    receipt: Receipt | None


@dataclass(frozen=True, slots=True)
class AppendRecords:
    """Records of a unary call, encoded by the writer into one row with the other records
    of its transaction."""

    future: asyncio.Future[None]
    records: Sequence[OutboxRecord]
    n: int  # events: a DecisionEvents record holds many
    created_ms: int


@dataclass(frozen=True, slots=True)
class Ack:
    """Each `(row_id, sent)` row has its first `sent` events delivered (or, with
    `dead_letter`, refused and stored there). The future gives the events newly covered."""

    future: asyncio.Future[int]
    progress: tuple[tuple[int, int], ...]
    dead_letter: DeadLetter | None


@dataclass(frozen=True, slots=True)
class CountResults:
    """Catch the results counters up, then read one experiment's raw counts."""

    future: asyncio.Future[RawCounts]
    experiment_id: str


@dataclass(frozen=True, slots=True)
class Stop:
    """Close the database; everything queued before it is done first."""

    future: asyncio.Future[None]


Write = AppendRow | AppendRecords | Ack  # what a write transaction carries
Operation = Write | CountResults | Stop


@dataclass(slots=True)
class Settlement:
    """What one round of operations did, applied to the loop-side counters in one callback."""

    appended: int = 0  # events stored
    released: int = 0  # events reserved but not stored: a failed write, or duplicates
    duplicates: int = 0  # appends that stored nothing: their receipt was claimed
    delivered: int = 0
    dead_lettered: int = 0
    futures: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = field(
        default_factory=list
    )
