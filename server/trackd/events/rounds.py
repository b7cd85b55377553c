"""A delivery round: Event API batches formed and encoded from outbox rows as stored.

No I/O, no asyncio (its one state, the last round's decoded rows, only saves work), so the
dispatcher runs it in its encoder process: the daemon hands over the rows' stored bytes, and
decoding them, splitting them into batches and building the JSON cost its event loop
nothing. Under TrackStream load that decoding alone
was as much daemon CPU per event as a third of acknowledging it.

A round starts at the first undelivered event of the first row. Its first batch goes
whatever its size; more follow only while a full batch's worth of events is left, so a
partial batch still waits for its flush interval. A batch holds one context (account,
project, revision, anonymize_ip) and at most `batch_size` events, and stops before an
undecodable row, which is a round of its own, bound for the dead-letter table.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any, NamedTuple

from trackd.events import payload
from trackd.events.records import (
    DECISIONS,
    DecisionEvents,
    StoredColumns,
    decision_uuids,
    decode_stored,
)

# (row_id, n, sent, fmt, body): an outbox row with undelivered events, as stored.
RowPart = tuple[int, int, int, int, bytes]

# Positions in a plain record: Impression, Conversion and DecisionEvents alike.
_KIND = DecisionEvents._fields.index("kind")
_CONTEXT = DecisionEvents._fields.index("context")
_TAILS = DecisionEvents._fields.index("tails")


class Formed(NamedTuple):
    """One batch of a round."""

    progress: tuple[tuple[int, int], ...]  # (row_id, sent) once this batch is delivered
    events: int
    body: bytes  # the Event API batch; with `error`, what goes to the dead-letter table
    error: str | None = None  # why it cannot be sent


class _StoredRecords(NamedTuple):
    """A `ROW_FORMAT` row as read back: its records as stored, a Decide call's
    `DecisionEvents` one record for its events (`payload.DecisionsRun` encodes them)."""

    records: list[tuple[Any, ...]]
    starts: list[int]  # the index of each record's first event in the row
    uuids: dict[int, str]  # each DecisionEvents' uuids, by its position in `records`
    events: int


Decoded = _StoredRecords | StoredColumns | str  # a row's records, or why not

# The rows the last round decoded, by row id, with the (n, fmt, body) they were decoded
# from. A round ends inside a row as often as not (16 batches of 100 from rows of 500), and
# the next one starts there: decoding that row again (its uuids, its kinds) and cutting its
# kinds again cost 0.3 us an event (successive rounds over 100 TrackStream rows of 500 new
# users, thread_time, median of 7: 1.86 -> 1.58 us). A hit is checked against the bytes, so
# a row id of another outbox, or of a database made anew, is never mistaken for it.
_last_round: dict[int, tuple[int, int, bytes, Decoded]] = {}


def form_round(rows: Sequence[RowPart], batch_size: int, max_batches: int) -> list[Formed]:
    """The batches of the round starting at `rows[0]`, at most `max_batches` of them."""
    global _last_round
    formed: list[Formed] = []
    decoded: dict[int, Decoded] = {}  # by position
    kept: dict[int, tuple[int, int, bytes, Decoded]] = {}
    last_round = _last_round

    def records(position: int) -> Decoded:
        found = decoded.get(position)
        if found is None:
            row_id, n, _, fmt, body = rows[position]
            last = last_round.get(row_id)
            if last is not None and last[:3] == (n, fmt, body):
                found = last[3]
            else:
                found = _decoded(n, fmt, body)
            decoded[position] = found
            kept[row_id] = (n, fmt, body, found)
        return found

    available = sum(n - sent for _, n, sent, _, _ in rows)
    position, index = 0, rows[0][2] if rows else 0
    while position < len(rows) and len(formed) < max_batches:
        undecodable = isinstance(records(position), str)
        if formed and (undecodable or available < batch_size):
            break
        if undecodable:
            row_id, n, _, _, body = rows[position]
            reason = f"undecodable outbox row: {records(position)}"
            formed.append(Formed(((row_id, n),), n - index, body, reason))
            break
        batch: list[payload.Part] = []
        events = 0
        progress: list[tuple[int, int]] = []
        context: Any = None
        while position < len(rows):
            stored = records(position)
            if isinstance(stored, str):
                break
            row_id, n = rows[position][0], rows[position][1]
            first = index
            if isinstance(stored, StoredColumns):
                # One context for the whole row: taken as a run, never record by record.
                if context is None:
                    context = stored.context
                if stored.context == context:
                    index = min(n, index + batch_size - events)
                    if index > first:
                        batch.append(payload.ColumnsRun(stored, first, index))
            else:
                plain, starts, uuids, _ = stored
                at = bisect_right(starts, index) - 1  # the record holding event `index`
                run: list[tuple[Any, ...]] = []
                while index < n and events + index - first < batch_size:
                    record = plain[at]
                    if context is None:
                        context = record[_CONTEXT]
                    elif record[_CONTEXT] != context:
                        break
                    if record[_KIND] != DECISIONS:
                        run.append(record)
                        index += 1
                        at += 1
                        continue
                    if run:
                        batch.append(run)
                        run = []
                    start = index - starts[at]
                    stop = min(len(record[_TAILS]), start + batch_size - events - index + first)
                    if stop > start:
                        batch.append(payload.DecisionsRun(record, uuids[at], start, stop))
                    index += stop - start
                    if stop == len(record[_TAILS]):
                        at += 1
                if run:
                    batch.append(run)
            events += index - first
            if index > first:
                progress.append((row_id, index))
            if index < n:
                break
            position += 1
            index = rows[position][2] if position < len(rows) else 0
        available -= events
        formed.append(_encoded(context, batch, events, tuple(progress)))
    _last_round = kept
    return formed


def _decoded(n: int, fmt: int, body: bytes) -> Decoded:
    try:
        stored = decode_stored(body, fmt)
        found = stored if isinstance(stored, StoredColumns) else _stored_records(stored)
    except Exception as error:
        return repr(error)
    held = len(found.users) if isinstance(found, StoredColumns) else found.events
    return found if held == n else f"the row holds {held} events, not {n}"


def _stored_records(plain: list[tuple[Any, ...]]) -> _StoredRecords:
    """Where each record's events start, and each DecisionEvents' uuids, drawn once a row
    (a call's events can span two batches, and rounds)."""
    starts: list[int] = []
    uuids: dict[int, str] = {}
    events = 0
    for position, record in enumerate(plain):
        starts.append(events)
        if record[_KIND] == DECISIONS:
            uuids[position] = decision_uuids(record)
            events += len(record[_TAILS])
        else:
            events += 1
    return _StoredRecords(plain, starts, uuids, events)


def _encoded(
    context: Any, batch: list[payload.Part], events: int, progress: tuple[tuple[int, int], ...]
) -> Formed:
    try:
        return Formed(progress, events, payload.encode_parts(context, batch))
    except (TypeError, ValueError) as error:
        return Formed(
            progress,
            events,
            repr(payload.plain_records(batch)).encode(),
            f"cannot encode the batch: {error}",
        )


__all__ = ["Formed", "RowPart", "form_round"]
