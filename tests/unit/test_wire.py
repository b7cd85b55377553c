"""trackd.rpc.wire: a streamed event reads exactly as Track reads the same bytes."""

from __future__ import annotations

import math
import struct

import pytest
from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import Value
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.protowire import field as _field
from trackd.errors import InvalidArgument, ResourceExhausted, TrackdError
from trackd.rpc import values, wire
from trackd.v1 import tracking_service_pb2 as pb

LIMITS = values.Limits(max_entries=3, max_key_length=8, max_string_value_length=10)


def _value(**kind: object) -> Value:
    return Value(**kind)  # type: ignore[arg-type]


def _event(attributes: dict[str, Value], tags: dict[str, Value] | None = None) -> pb.TrackRequest:
    event = pb.TrackRequest(event_key="signup", user_id="u-1")
    for key, value in attributes.items():
        event.attributes[key].CopyFrom(value)
    for key, value in (tags or {}).items():
        event.tags[key].CopyFrom(value)
    return event


def _reference(raw: bytes, limits: values.Limits) -> object:
    """What the stream made of the same bytes before trackd.rpc.wire: the generated parser on
    the batch, then Track's checks (wire.track_input); an error as (type, text), one
    the parser raised as "undecodable"."""
    try:
        event = pb.TrackStreamRequest.FromString(_field(2, raw)).events[0]
    except DecodeError:
        return "undecodable"
    try:
        return wire.track_input(event, limits)
    except TrackdError as error:
        return (type(error), str(error))


def _read(reader: wire.EventReader, raw: bytes) -> object:
    try:
        return reader.read(raw)
    except TrackdError as error:
        if "not a valid protobuf message" in str(error):
            return "undecodable"
        return (type(error), str(error))


def _comparable(answer: object) -> str:
    # Maps sorted: their order is the wire's or the runtime's, neither meaningful. Compared
    # as text, because NaN is not equal to itself.
    if isinstance(answer, tuple) and len(answer) == 4:
        return repr((*answer[:2], *(sorted(m.items()) for m in answer[2:])))
    return repr(answer)


def _same_as_track(reader: wire.EventReader, raw: bytes, limits: values.Limits) -> None:
    expected = _comparable(_reference(raw, limits))
    for _ in range(2):  # first sight, then remembered
        assert _comparable(_read(reader, raw)) == expected


MAPS = {
    "strings": {"device": _value(string_value="iPhone"), "plan": _value(string_value="")},
    "whole number": {"n": _value(number_value=31.0)},
    "fraction": {"n": _value(number_value=2.5)},
    "beyond 2**53": {"n": _value(number_value=2.0**60)},
    "nan": {"n": _value(number_value=math.nan)},
    "bool and null": {"b": _value(bool_value=False), "z": _value(null_value=0)},
    "unset value": {"u": Value()},
    "list": {"l": _value(list_value={"values": [_value(string_value="x")]})},
    "struct": {"s": _value(struct_value={"fields": {"k": _value(string_value="x")}})},
    "too many": {k: _value(string_value="x") for k in "abcd"},
    "long name": {"x" * 9: _value(string_value="x")},
    "long string": {"k": _value(string_value="y" * 11)},
}


@pytest.mark.parametrize("as_tags", [False, True], ids=["attributes", "tags"])
@pytest.mark.parametrize("name", list(MAPS))
def test_a_map_reads_as_track_reads_it(name: str, as_tags: bool) -> None:
    event = _event({}, MAPS[name]) if as_tags else _event(MAPS[name])
    raw = event.SerializeToString()
    _same_as_track(wire.EventReader(LIMITS), raw, LIMITS)
    maps_first = raw[raw.index(b"\x12") + 5 :] + raw[: raw.index(b"\x12") + 5]  # no hand split
    _same_as_track(wire.EventReader(LIMITS), maps_first, LIMITS)


def test_the_view_reads_every_field_of_a_batch() -> None:
    first = _event({"device": _value(string_value="iPad")}, {"revenue": _value(number_value=42)})
    second = pb.TrackRequest(event_key="buy", user_id="u-2")
    data = pb.TrackStreamRequest(sequence=2**64 - 1, events=[first, second]).SerializeToString()
    view = wire.TrackStreamRequestView.FromString(data)
    assert view.sequence == 2**64 - 1
    reader = wire.EventReader(LIMITS)
    assert [reader.read(raw) for raw in view.events] == [
        ("signup", "u-1", {"device": "iPad"}, {"revenue": 42}),
        ("buy", "u-2", {}, {}),
    ]


def test_the_views_keep_every_field_number_of_the_api() -> None:
    """A field added to TrackRequest or TrackStreamRequest appears in the views: never an
    unknown field silently dropped from streamed events."""
    for api, view in (
        (pb.TrackStreamRequest.DESCRIPTOR, wire.TrackStreamRequestView.DESCRIPTOR),
        (pb.TrackRequest.DESCRIPTOR, wire.TrackRequestView.DESCRIPTOR),
    ):
        assert {f.number: f.name for f in api.fields} == {f.number: f.name for f in view.fields}


def test_the_hand_split_knows_every_field_of_an_event() -> None:
    """EventReader.read splits event_key and user_id off by hand and takes the rest as the
    maps: a new TrackRequest field must be read there (and in Track) before it ships."""
    fields = {f.number: f.name for f in pb.TrackRequest.DESCRIPTOR.fields}
    assert fields == {1: "event_key", 2: "user_id", 3: "attributes", 4: "tags"}


_DEVICE = _field(3, _field(1, b"device") + _field(2, _field(3, b"iPad")))
_NAN_TAG = _field(4, _field(1, b"n") + _field(2, b"\x11" + struct.pack("<d", math.nan)))
_CANONICAL = _field(1, b"signup") + _field(2, b"u-1") + _DEVICE
_MANY = b"".join(_field(3, _field(1, b"k%d" % i) + _field(2, _field(3, b"x"))) for i in range(101))
_BAD_TAG = _field(4, _field(1, b"\xc3\x28"))
RAW_EVENTS = {
    "canonical": _CANONICAL,
    "same tail, other user": _field(1, b"signup") + _field(2, b"u-2") + _DEVICE,
    "no maps": _field(1, b"signup") + _field(2, b"u-3"),
    "long user id (two-byte length)": _field(1, b"buy") + _field(2, b"u" * 300) + _DEVICE,
    "user id over the limit": _field(1, b"buy") + _field(2, b"u" * 1100) + _DEVICE,
    "user id of 20000 (three-byte length)": _field(1, b"buy") + _field(2, b"u" * 20000),
    "key over the limit": _field(1, b"k" * 300) + _field(2, b"u-1") + _DEVICE,
    # Over the limit in bytes, not in characters: read, however the length is checked.
    "user id of 1024 two-byte characters": _field(1, b"buy")
    + _field(2, "é".encode() * 1024)
    + _DEVICE,
    "user id of 1025 two-byte characters": _field(1, b"buy")
    + _field(2, "é".encode() * 1025)
    + _DEVICE,
    "key of 256 two-byte characters": _field(1, "é".encode() * 256) + _field(2, b"u") + _DEVICE,
    "no event key": _field(2, b"u-1") + _DEVICE,
    "no user id": _field(1, b"signup") + _DEVICE,
    "empty": b"",
    "maps first": _DEVICE + _field(1, b"signup") + _field(2, b"u-1"),
    "event key repeated in the tail": _CANONICAL + _field(1, b"buy"),
    "user id repeated in the tail": _CANONICAL + _field(2, b"u-9"),
    "empty event key in the tail": _CANONICAL + _field(1, b""),
    "unknown field in the tail": _CANONICAL + _field(9, b"x"),
    "bad UTF-8 event key": _field(1, b"\xc3\x28") + _field(2, b"u-1"),
    "bad UTF-8 user id": _field(1, b"signup") + _field(2, b"\xff") + _DEVICE,
    "bad UTF-8 attribute name": _field(1, b"signup")
    + _field(2, b"u-1")
    + _field(3, b"\x0a\x01\xff"),
    "truncated": _CANONICAL[:-2],
    "length past the end": _field(1, b"signup") + b"\x12\x7f" + b"u-1",
    "NaN tag": _field(1, b"signup") + _field(2, b"u-1") + _NAN_TAG,
    # Entries the runtime leaves out of the map (into unknown fields), as upb does.
    "entry with an unknown field": _field(1, b"signup")
    + _field(2, b"u-1")
    + _field(3, _field(1, b"k") + _field(2, _field(3, b"v")) + _field(9, b"z")),
    "value with an unknown field": _field(1, b"signup")
    + _field(2, b"u-1")
    + _field(3, _field(1, b"k") + _field(2, _field(3, b"v") + _field(9, b"z"))),
    "entry key of the wrong wire type": _field(1, b"signup")
    + _field(2, b"u-1")
    + _field(3, _field(1, b"k") + b"\x08\x01" + _field(2, _field(3, b"v"))),
    # Undecodable beats every other error, as when the parser read the whole batch.
    "too many attributes and an undecodable tag": _field(1, b"signup")
    + _field(2, b"u-1")
    + _MANY
    + _BAD_TAG,
    "empty key and an undecodable attribute": _field(1, b"") + _field(2, b"u-1") + _BAD_TAG,
}


@pytest.mark.parametrize("name", list(RAW_EVENTS))
def test_a_raw_event_reads_as_track_reads_it(name: str) -> None:
    _same_as_track(wire.EventReader(values.Limits()), RAW_EVENTS[name], values.Limits())


def test_every_raw_event_reads_as_track_reads_it_after_all_the_others() -> None:
    """One reader for all of them, twice over: what one event left in memory never changes
    what another reads as."""
    reader = wire.EventReader(values.Limits())
    for _ in range(2):
        for raw in RAW_EVENTS.values():
            _same_as_track(reader, raw, values.Limits())


@pytest.mark.parametrize("repeated", ["event_key", "user_id"])
def test_a_tail_repeating_the_split_fields_is_never_split_by_hand(repeated: str) -> None:
    """The tail repeats the first event's own value, so the split agrees with the parser for
    it; an event with another prefix and the same tail must still read as the parser reads
    it (the last occurrence wins)."""
    again = _field(1, b"signup") if repeated == "event_key" else _field(2, b"u-1")
    tail = again + _DEVICE
    reader = wire.EventReader(values.Limits())
    for prefix in (b"signup", b"u-1"), (b"buy", b"u-2"):
        raw = _field(1, prefix[0]) + _field(2, prefix[1]) + tail
        _same_as_track(reader, raw, values.Limits())


def test_remembered_maps_serve_every_event_with_the_same_tail() -> None:
    reader = wire.EventReader(values.Limits())
    events = [
        reader.read(_field(1, b"signup") + _field(2, f"u-{n}".encode()) + _DEVICE) for n in range(3)
    ]
    assert [e.user_id for e in events] == ["u-0", "u-1", "u-2"]
    assert all(e.attributes == {"device": "iPad"} for e in events)
    assert events[1].attributes is events[0].attributes  # decoded once
    assert len(reader._tails) == 1  # one tail, split by hand for every event


def test_errors_are_raised_every_time_and_never_remembered() -> None:
    reader = wire.EventReader(LIMITS)
    raw = _event({k: _value(string_value="x") for k in "abcd"}).SerializeToString()
    for _ in range(2):
        assert _read(reader, raw) == (
            ResourceExhausted,
            "too many attributes: 4 (limit 3)",
        )
    assert not reader._tails and not reader._attributes


def test_an_event_key_is_one_str_for_all_its_events_and_only_a_valid_one_is_remembered() -> None:
    """The tracker looks each event's key up: one str per key, its hash worked out once. A
    key Track refuses is refused every time, behind a remembered tail too."""
    reader = wire.EventReader(LIMITS)
    _, first, second = (  # the first seen is parsed whole, the others split by hand
        reader.read(_field(1, b"signup") + _field(2, f"u-{n}".encode()) + _DEVICE) for n in range(3)
    )
    assert first.event_key == "signup" and second.event_key is first.event_key
    for _ in range(2):
        assert _read(reader, _field(1, b"k" * 9) + _field(2, b"u-1") + _DEVICE) == (
            InvalidArgument,
            "event_key is longer than 8 characters",
        )
        assert _read(reader, _field(1, b"") + _field(2, b"u-1") + _DEVICE) == (
            InvalidArgument,
            "event_key must not be empty",
        )
    assert list(reader._keys.values()) == ["signup"]


def test_memory_is_bounded_in_items_and_bytes_and_answers_stay_right_past_it() -> None:
    reader = wire.EventReader(values.Limits())
    for n in range(wire.MAX_REMEMBERED + 10):
        device = _field(3, _field(1, b"device") + _field(2, _field(3, f"d{n}".encode())))
        assert reader.read(_field(1, b"signup") + _field(2, b"u") + device).attributes == {
            "device": f"d{n}"
        }
    assert len(reader._tails) <= wire.MAX_REMEMBERED
    bulky = _CANONICAL + _field(9, b"x" * (wire.MAX_REMEMBERED_BYTES + 1))
    before = len(reader._tails)
    _same_as_track(reader, bulky, values.Limits())
    assert len(reader._tails) == before  # a tail too long to remember is read afresh


_TEXTS = [b"", b"a", b"u-1", b"signup", b"x" * 130, b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00"]
_VALUES = [
    _field(3, b"v"),
    _field(3, b"\xff"),
    b"\x11" + struct.pack("<d", math.nan),
    b"\x11" + struct.pack("<d", 2.0**60),
    b"\x20\x01",  # bool_value
    b"\x08\x00",  # null_value
    b"",  # no kind at all
    _field(6, b""),  # an empty list
    _field(9, b"z"),  # an unknown field
    b"\x11\x00",  # truncated double
]


@st.composite
def _raw_events(draw: st.DrawFn) -> bytes:
    def entry() -> bytes:
        parts = [
            draw(st.sampled_from([b"", _field(1, draw(st.sampled_from(_TEXTS)))])),
            draw(st.sampled_from([b"", _field(2, draw(st.sampled_from(_VALUES)))])),
            draw(st.sampled_from([b"", _field(9, b"z"), b"\x08\x01"])),
        ]
        return b"".join(draw(st.permutations(parts)))

    fields = [
        _field(draw(st.sampled_from([1, 2, 3, 3, 4, 4, 9])), draw(st.sampled_from(_TEXTS)))
        if draw(st.booleans())
        else _field(draw(st.sampled_from([3, 4])), entry())
        for _ in range(draw(st.integers(0, 4)))
    ]
    prefix = _field(1, draw(st.sampled_from(_TEXTS))) + _field(2, draw(st.sampled_from(_TEXTS)))
    raw = draw(st.sampled_from([prefix, b""])) + b"".join(fields)
    if raw and draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw


@pytest.mark.slow
@settings(max_examples=400, derandomize=True, database=None, deadline=None)
@given(events=st.lists(_raw_events(), min_size=1, max_size=4), user=st.sampled_from(_TEXTS))
def test_any_event_reads_as_track_reads_it(events: list[bytes], user: bytes) -> None:
    """Each event twice, and again behind another user id (the same tail, split by hand if it
    can be), through one reader: every answer is the parser's and Track's."""
    limits = values.Limits(max_entries=3, max_key_length=6, max_user_id_length=100)
    reader = wire.EventReader(limits)
    for raw in events:
        _same_as_track(reader, raw, limits)
        _same_as_track(reader, _field(1, b"signup") + _field(2, user) + raw, limits)
