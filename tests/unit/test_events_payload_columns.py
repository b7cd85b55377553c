"""A TrackStream row's events, encoded straight from its columns (`payload.ColumnsRun`), are
byte for byte the reference: `event_batch(...)` of the records the columns stand for, through
json.dumps. And a round formed from such rows is the round formed from the same events
stored as plain records, batch for batch.

Rows are generated as the outbox stores them (pickled columns), so the events of a kind
share one event, attribute list and tags object after decoding, as a TrackStream batch's do;
the values are the awkward ones of test_events_payload_spliced (escapes, unicode, numbers of
every type, empty maps, revenue and value tags).
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_events_payload_spliced import (
    _Config,
    _Event,
    attribute_lists,
    contexts,
    floats,
    ids,
    ints,
    outcome,
    reference,
    tag_maps,
    texts,
)
from trackd.events import payload
from trackd.events.records import (
    COLUMNS_FORMAT,
    ROW_FORMAT,
    ConversionColumns,
    StoredColumns,
    decode_plain,
    decode_stored,
    encode_row,
    encode_rows,
    expand,
)
from trackd.events.rounds import RowPart, form_round
from trackd.events.tags import ParsedTags

Columns = tuple[Any, ...]  # (context, now_ms, seed, events, users, attributes, tags, pairs)

SEEDS = st.integers(0, 2**128 - 1)


@st.composite
def columns(draw: st.DrawFn, context: Any = None) -> Columns:
    """A row's columns: events drawn from a few kinds, each part of a kind one object."""
    context = draw(contexts) if context is None else context
    events = draw(st.lists(st.tuples(ids, texts), min_size=1, max_size=3))
    attributes = draw(st.lists(attribute_lists, min_size=1, max_size=3))
    tags = draw(
        st.lists(st.tuples(st.none() | ints, st.none() | floats, tag_maps), min_size=1, max_size=3)
    )
    count = draw(st.integers(1, 12))
    pick = st.integers(0, 2)
    return (
        context,
        draw(st.integers(0, 2**63)),
        draw(SEEDS),
        [events[draw(pick) % len(events)] for _ in range(count)],
        draw(st.lists(texts, min_size=count, max_size=count)),
        [attributes[draw(pick) % len(attributes)] for _ in range(count)],
        [tags[draw(pick) % len(tags)] for _ in range(count)],
        [()] * count,
    )


def stored(row: Columns) -> StoredColumns:
    found = decode_stored(pickle.dumps(row, protocol=5), COLUMNS_FORMAT)
    assert isinstance(found, StoredColumns)
    return found


@settings(max_examples=300, derandomize=True, deadline=None)
@given(columns(), st.data())
def test_a_run_of_columns_is_the_reference_byte_for_byte(row: Columns, data: st.DataObject) -> None:
    read = stored(row)
    count = len(read.users)
    start = data.draw(st.integers(0, count - 1))
    stop = data.draw(st.integers(start + 1, count))
    context = read.context
    plain = expand(read, start, stop)
    expected = reference(context, plain)
    # The columns' own path (no fallback), the records' spliced path, the public call.
    run = payload.ColumnsRun(read, start, stop)
    assert payload.parts_text(context, [run]).encode() == expected
    assert payload.plain_batch_text(context, plain).encode() == expected
    assert payload.encode_parts(context, [run]) == expected


@settings(max_examples=100, derandomize=True, deadline=None)
@given(contexts.flatmap(lambda c: st.lists(columns(c), min_size=1, max_size=3)), st.booleans())
def test_runs_of_columns_and_of_records_mix_in_order(
    rows: list[Columns], plain_first: bool
) -> None:
    """A batch spanning rows: a kind's pieces are kept per run, attribute lists per call."""
    reads = [stored(row) for row in rows]
    context = reads[0].context
    parts: list[payload.Part] = [payload.ColumnsRun(read, 0, len(read.users)) for read in reads]
    plain = decode_plain(encode_rows(expand(reads[0])))  # type: ignore[arg-type]
    parts.insert(0 if plain_first else len(parts), plain)
    expected = reference(context, payload.plain_records(parts))
    assert payload.parts_text(context, parts).encode() == expected


def as_row_format(row: RowPart) -> RowPart:
    """The same row stored as plain records: the same events, uuids included."""
    row_id, n, sent, fmt, body = row
    return (row_id, n, sent, ROW_FORMAT, encode_rows(decode_plain(body, fmt)))  # type: ignore[arg-type]


@settings(max_examples=100, derandomize=True, deadline=None)
@given(
    st.lists(contexts, min_size=1, max_size=2).flatmap(
        lambda cs: st.lists(st.sampled_from(cs).flatmap(columns), min_size=1, max_size=4)
    ),
    st.data(),
)
def test_a_round_of_column_rows_is_the_round_of_the_same_records(
    rows: list[Columns], data: st.DataObject
) -> None:
    """Batches split inside a row, span rows, stop where the context changes, start at a
    row's first undelivered event: the same batches, bytes and progress either way."""
    parts: list[RowPart] = []
    for row_id, row in enumerate(rows, start=1):
        n = len(row[4])
        sent = data.draw(st.integers(0, n - 1)) if row_id == 1 else 0
        parts.append((row_id, n, sent, COLUMNS_FORMAT, pickle.dumps(row, protocol=5)))
    batch_size = data.draw(st.integers(1, 15))
    plain_rows = [as_row_format(row) for row in parts]
    assert form_round(parts, batch_size, 16) == form_round(plain_rows, batch_size, 16)


def test_a_trackstream_batch_goes_through_its_columns() -> None:
    """A row as TrackStream commits it (`ConversionColumns`), through `form_round`."""
    batch = ConversionColumns(_Config(), now_ms=1765100000000)
    signup, buy = _Event("30001", "signup"), _Event("30002", "buy \u2028")
    kinds = [
        (signup, {"device": "iPhone"}, ParsedTags({}, None, None)),
        (buy, {"device": "é", "age": 37}, ParsedTags({"revenue": 4200, "c": "s"}, 4200, None)),
        (buy, {}, ParsedTags({"value": "3.5", "revenue": None, "x": None}, None, 3.5)),
    ]
    for n in range(30):
        event, attributes, tags = kinds[n % 3]
        batch.add(event, f'u"{n}\\é', attributes, tags, ())
    fmt, body = encode_row(batch)
    row: RowPart = (1, 30, 0, fmt, body)
    formed = form_round([row], 10, 16)
    assert [f.events for f in formed] == [10, 10, 10]
    assert formed == form_round([as_row_format(row)], 10, 16)
    everything = decode_plain(body, fmt)
    assert formed[1].body == reference(everything[0][1], everything[10:20])


def _columns(**changes: Any) -> Columns:
    fields = {
        "context": ("12001", "12002", "7", False),
        "now_ms": 1765100000000,
        "seed": 7,
        "events": [("30001", "signup")] * 2,
        "users": ["u1", "u2"],
        "attributes": [(("20001", "device", "iPhone"),)] * 2,
        "tags": [(5, 1.5, {"x": 1})] * 2,
        "attributions": [()] * 2,
    }
    fields.update(changes)
    return tuple(fields.values())


# Values trackd never stores in a column row: the columns' path must step aside for the
# reference, whose bytes or error are the answer, as it does for records.
IRREGULAR: dict[str, Columns] = {
    "int user id": _columns(users=["u1", 2]),
    "float timestamp": _columns(now_ms=1.5),
    "bool timestamp": _columns(now_ms=True),
    "uuid prefix that json escapes": _columns(seed='ab"\\'),
    "splice mark in an event key": _columns(events=[("30001", payload._SPLICE)] * 2),
    "splice mark in a user id": _columns(users=["u1", payload._SPLICE]),
    "int event id": _columns(events=[(30001, "signup")] * 2),
    "int tag key": _columns(tags=[(None, None, {1: "a"})] * 2),
    "infinite value": _columns(tags=[(None, float("inf"), {})] * 2),
    "lone surrogate user id": _columns(users=["u1", "\ud800"]),
    "int anonymize_ip": _columns(context=("12001", "12002", "7", 1)),
}


@pytest.mark.parametrize("row", IRREGULAR.values(), ids=IRREGULAR.keys())
def test_a_value_trackd_never_stores_gets_the_references_bytes_or_error(row: Columns) -> None:
    read = stored(row)
    run = payload.ColumnsRun(read, 0, 2)
    expected = outcome(reference, read.context, expand(read))
    assert outcome(payload.encode_parts, read.context, [run]) == expected
    body = pickle.dumps(row, protocol=5)
    rows: list[RowPart] = [(1, 2, 0, COLUMNS_FORMAT, body)]
    assert form_round(rows, 10, 16) == form_round([as_row_format(rows[0])], 10, 16)


UNEXPANDABLE: dict[str, Columns] = {
    "short event": _columns(events=[("30001",)] * 2),
    "event of an int": _columns(events=[7, ("30001", "signup")]),
    "short tags": _columns(tags=[(5, 1.5)] * 2),
}


@pytest.mark.parametrize("row", UNEXPANDABLE.values(), ids=UNEXPANDABLE.keys())
def test_a_row_of_columns_that_cannot_expand_is_undecodable_as_it_was(row: Columns) -> None:
    """Found when the row is read (`decode_stored`, as `decode_plain` always found it), so
    it is a dead-letter round of its own, never an error out of `form_round`."""
    body = pickle.dumps(row, protocol=5)
    with pytest.raises((IndexError, TypeError)) as raised:
        decode_plain(body, COLUMNS_FORMAT)
    (dead,) = form_round([(9, 2, 0, COLUMNS_FORMAT, body)], 10, 16)
    assert (dead.progress, dead.events, dead.body) == (((9, 2),), 2, body)
    assert dead.error == f"undecodable outbox row: {raised.value!r}"
