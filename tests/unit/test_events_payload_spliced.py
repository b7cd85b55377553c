"""The spliced delivery body is byte for byte the reference: `event_batch(...)` through
json.dumps.

Records are generated broadly (both impression shapes, conversions with and without
revenue, value and tags, attributes of every type, awkward strings and numbers), go through
an outbox row as the encoder process gets them (so the values a row shares are one object
after decoding), and the spliced text must equal the reference's.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from trackd.events import payload, records
from trackd.events.records import (
    CONVERSION,
    IMPRESSION,
    ConversionColumns,
    Impression,
    decode_plain,
    encode_row,
    encode_rows,
    from_plain,
)
from trackd.events.tags import ParsedTags

Plain = tuple[Any, ...]

# Characters json escapes or a careless encoder mangles, among any others.
AWKWARD = ['"', "\\", "/", "\u2028", "\u2029", "\x00", "\x1f", "\x7f", "\t", "é", "😀", "ß"]
texts = st.text(st.sampled_from(AWKWARD) | st.characters(exclude_categories=("Cs",)), max_size=6)
# Variation ids: decimal digits are sent as they are, anything else (non-ASCII digits too)
# as null.
ids = st.sampled_from(["", "0", "42001", "0042", "١٢٣", "²", "12a", "var_a", " 1"]) | texts
floats = st.sampled_from([0.0, -0.0, 0.1, 1e16, 1e-7, 5e-324, 2.0**53, 1.7976931348623157e308])
floats |= st.floats(allow_nan=False, allow_infinity=False)
ints = st.sampled_from([0, -1, 2**53, -(2**53), 2**64, 10**30]) | st.integers()
scalars = st.none() | st.booleans() | ints | floats | texts
attribute_lists = st.lists(st.tuples(ids, texts, scalars), max_size=4).map(tuple)
tag_names = st.sampled_from(["revenue", "value", "tags", "decisions", "category"]) | texts
tag_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=2) | st.dictionaries(tag_names, children, max_size=2)
    ),
    max_leaves=4,
)
rule_types = st.sampled_from(
    [
        records.RULE_TYPE_EXPERIMENT,
        records.RULE_TYPE_FEATURE_TEST,
        records.RULE_TYPE_ROLLOUT,
        records.RULE_TYPE_HOLDOUT,
    ]
)
contexts = st.tuples(texts, texts, texts, st.booleans())
common = (texts, st.integers(0, 2**63), texts)  # uuid, timestamp, visitor id


@st.composite
def impression(draw: st.DrawFn, context: Any, attributes: Any) -> Plain:
    uuid, timestamp, user = (draw(s) for s in common)
    fields = (IMPRESSION, context, uuid, timestamp, user, attributes)
    decision = (draw(ids), draw(texts), draw(ids), draw(ids), draw(texts))
    if draw(st.booleans()):  # Activate's, or a row stored before flag decisions: 11 fields
        return (*fields, *decision)
    return (*fields, *decision, draw(texts), draw(rule_types | texts), draw(st.booleans()))


tag_maps = st.dictionaries(tag_names, tag_values, max_size=4)


@st.composite
def conversion(draw: st.DrawFn, context: Any, attributes: Any, tags: Any) -> Plain:
    uuid, timestamp, user = (draw(s) for s in common)
    revenue = draw(st.none() | ints)
    value = draw(st.none() | floats)
    attributions = draw(st.lists(st.tuples(ids, ids), max_size=2).map(tuple))
    event = (draw(ids), draw(texts))
    return (
        CONVERSION,
        context,
        uuid,
        timestamp,
        user,
        attributes,
        *event,
        revenue,
        value,
        tags,
        attributions,
    )


@st.composite
def batches(draw: st.DrawFn) -> tuple[Any, list[Plain]]:
    """A context and a mix of records, some sharing one attribute list (as a Decide's do)
    or one tag mapping (as a TrackStream batch's do)."""
    context = draw(contexts)
    shared_attributes = draw(st.lists(attribute_lists, min_size=1, max_size=3))
    shared_tags = draw(st.lists(tag_maps, min_size=1, max_size=2))
    found: list[Plain] = []
    for _ in range(draw(st.integers(1, 6))):
        attributes = draw(st.sampled_from(shared_attributes) | attribute_lists)
        if draw(st.booleans()):
            found.append(draw(impression(context, attributes)))
        else:
            tags = draw(st.sampled_from(shared_tags) | tag_maps)
            found.append(draw(conversion(context, attributes, tags)))
    return context, found


def as_stored(plain: Sequence[Plain]) -> list[Plain]:
    """The records as the encoder process gets them: through an outbox row."""
    return decode_plain(encode_rows(plain))  # type: ignore[arg-type]


def reference(context: Any, plain: Sequence[Plain]) -> bytes:
    """The dict-built batch, through json.dumps itself as trackd always called it."""
    batch = payload.event_batch(context, from_plain(plain))
    return json.dumps(batch, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def outcome(encoder: Callable[[Any, Sequence[Plain]], bytes], *args: Any) -> Any:
    """The bytes, or the type and message of the error."""
    try:
        return encoder(*args)
    except Exception as error:
        return type(error), str(error)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(batches())
def test_the_spliced_text_is_the_reference_byte_for_byte(batch: tuple[Any, list[Plain]]) -> None:
    context, plain = batch
    stored = as_stored(plain)
    expected = reference(context, stored)
    # The spliced path itself (no fallback), then through the public calls.
    assert payload.plain_batch_text(context, stored).encode() == expected
    assert payload.encode_batch(context, stored) == expected
    assert payload.encode_batch(context, from_plain(stored)) == expected


@dataclass(frozen=True)
class _Attribute:
    id: str


@dataclass(frozen=True)
class _Event:
    id: str
    key: str


@dataclass(frozen=True)
class _Config:
    account_id: str = "12001"
    project_id: str = "12002"
    revision: str = "7"
    anonymize_ip: bool = True
    bot_filtering: bool | None = False
    attributes_by_key: dict[str, _Attribute] = field(
        default_factory=lambda: {"device": _Attribute("20001"), "age": _Attribute("20002")}
    )


@settings(max_examples=100, derandomize=True, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([_Event("30001", "signup"), _Event("30002", "buy \u2028")]),
            texts,
            st.sampled_from([{}, {"device": "iPhone"}, {"device": "é", "age": 37}, {"age": 0.5}]),
            st.sampled_from(
                [
                    ParsedTags({}, None, None),
                    ParsedTags({"revenue": 4200, "category": "shoes"}, 4200, None),
                    ParsedTags({"value": "3.5", "revenue": None, "x": None}, None, 3.5),
                ]
            ),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_a_trackstream_row_of_shared_values_is_the_reference(
    events: list[tuple[_Event, str, dict[str, Any], ParsedTags]],
) -> None:
    """A COLUMNS_FORMAT row, whose events share their event, attribute and tag objects."""
    columns = ConversionColumns(_Config(), now_ms=1765100000000)
    for event, user, attributes, tags in events:
        columns.add(event, user, attributes, tags, ())
    fmt, body = encode_row(columns)
    stored = decode_plain(body, fmt)
    context = stored[0][1]
    assert payload.plain_batch_text(context, stored).encode() == reference(context, stored)


def _record(**changes: Any) -> Plain:
    record = Impression(
        IMPRESSION,
        ("12001", "12002", "7", False),
        "f1e2d3c4-0000-4000-8000-000000000001",
        1765100000000,
        "u1",
        (("20001", "device", "iPhone"),),
        "40001",
        "ab",
        "41001",
        "42001",
        "on",
        "checkout",
        records.RULE_TYPE_FEATURE_TEST,
        True,
    )
    return tuple(record._replace(**changes))


def _conversion(**changes: Any) -> Plain:
    fields = dict(
        zip(
            records.Conversion._fields,
            (CONVERSION, *_record()[1:6], "30001", "signup", 5, 1.5, {"x": 1}, ()),
            strict=True,
        )
    )
    fields.update(changes)
    return tuple(fields.values())


def test_values_equal_across_types_are_printed_each_as_its_own() -> None:
    """True == 1 == 1.0 and 0.0 == -0.0, but each prints differently: nothing kept by value
    may stand for another (attribute lists, extras, decisions, in one batch and the next)."""
    values = [True, 1, 1.0, False, 0, 0.0, -0.0]
    tags = {"x": 1}
    plain = [_record(attributes=(("20001", "device", value),)) for value in values]
    plain += [_conversion(revenue=value, value=value, tags=tags) for value in values]
    plain += [_conversion(revenue=value, value=None, tags={"y": value}) for value in values]
    stored = as_stored(plain)
    context = plain[0][1]
    for batch in (stored, stored[::-1]):
        assert payload.plain_batch_text(context, batch).encode() == reference(context, batch)


# Values trackd never stores: the spliced path must step aside for the reference, whose
# bytes or error are the answer.
IRREGULAR: dict[str, list[Plain]] = {
    "bool timestamp": [_record(timestamp=True)],
    "int enabled, after a bool one with the same decision": [_record(), _record(enabled=1)],
    "int anonymize_ip context": [_record(context=("12001", "12002", "7", 1))],
    "int ids, after the same ids as strings": [_record(), _record(experiment_id=40001)],
    "bool attribute id": [_record(attributes=((True, "device", "x"),))],
    "NaN attribute": [_record(attributes=(("20001", "device", math.nan),))],
    "set attribute": [_record(attributes=(("20001", "device", {1}),))],
    "list attribute": [_record(attributes=(("20001", "device", [1, "a"]),))],
    "splice mark in a key": [_record(flag_key=payload._SPLICE)],
    "splice mark in an attribute key": [_record(attributes=(("1", payload._SPLICE, 1),))],
    "lone surrogate": [_record(user_id="\ud800")],
    "int tag key": [_conversion(tags={1: "a", "b": 2})],
    "infinite value": [_conversion(value=math.inf)],
    "unknown kind": [_record(), (7, *_record()[1:])],
    "short impression": [_record()[:9]],
    "long conversion": [(*_conversion(), "extra")],
    "unhashable flag key": [_record(flag_key=["a"])],
}


@pytest.mark.parametrize("plain", IRREGULAR.values(), ids=IRREGULAR.keys())
def test_a_value_trackd_never_stores_gets_the_references_bytes_or_error(
    plain: list[Plain],
) -> None:
    context = plain[-1][1]
    expected = outcome(reference, context, plain)
    assert outcome(payload.encode_batch, context, plain) == expected
    # And once more, now that the first call kept its pieces.
    assert outcome(payload.encode_batch, context, plain) == expected


def test_kept_pieces_are_bounded() -> None:
    for n in range(payload._KEPT + 10):
        record = _record(flag_key=f"flag{n}", attributes=((f"a{n}", "k", 1),))
        payload.plain_batch_text(("12001", "12002", f"r{n}", False), [record])
    for cache in (payload._visitor_cuts, payload._attribute_heads, payload._headers):
        assert 0 < len(cache) <= payload._KEPT


# A wrong encoder the generated batches must tell apart from the reference: proof that they
# reach what it gets wrong.
def _ascii_strings(text: str) -> str:
    return json.encoder.encode_basestring_ascii(text)


def _bools_as_ints(value: Any) -> str:
    return int.__repr__(value) if type(value) is bool else ORIGINAL_VALUE_TEXT(value)


def _floats_as_str_15g(value: Any) -> str:
    return format(value, ".15g") if type(value) is float else ORIGINAL_VALUE_TEXT(value)


ORIGINAL_VALUE_TEXT = payload._value_text
WRONG = {
    "strings escaped to ASCII": ("_string", _ascii_strings),
    "bools printed as ints": ("_value_text", _bools_as_ints),
    "floats printed to 15 digits": ("_value_text", _floats_as_str_15g),
}


@pytest.mark.parametrize(("name", "wrong"), WRONG.values(), ids=WRONG.keys())
def test_the_generated_batches_catch_a_wrong_encoder(
    monkeypatch: pytest.MonkeyPatch, name: str, wrong: Callable[[Any], str]
) -> None:
    monkeypatch.setattr(payload, name, wrong)

    def differs(batch: tuple[Any, list[Plain]]) -> bool:
        context, plain = batch
        stored = as_stored(plain)
        return payload.plain_batch_text(context, stored).encode() != reference(context, stored)

    no_shrinking = settings(derandomize=True, max_examples=400, phases=[Phase.generate])
    find(batches(), differs, settings=no_shrinking)


def test_a_row_pickled_with_shared_values_decodes_to_shared_objects() -> None:
    """What the per-batch caches by identity rely on: a row stores a shared value once."""
    attributes = (("20001", "device", "iPhone"),)
    stored = decode_plain(pickle.dumps([_record(attributes=attributes)] * 2, protocol=5))
    assert stored[0][5] is stored[1][5]
