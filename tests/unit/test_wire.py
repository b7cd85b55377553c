"""trackd.wire: TrackStream batches read with raw maps give what the generated parser gives."""

from __future__ import annotations

import math
import struct

import pytest
from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import Value

from trackd import values, wire
from trackd.errors import InvalidArgument, ResourceExhausted, TrackdError
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


def _view(*events: pb.TrackRequest, sequence: int = 9) -> object:
    data = pb.TrackStreamRequest(sequence=sequence, events=events).SerializeToString()
    return wire.TrackStreamRequestView.FromString(data)


def _both(entries: object, event: pb.TrackRequest, what: str, finite: bool) -> tuple[object, ...]:
    """(decoder's answer, plain_map's answer), each a dict or the error's type and text."""
    decoder = wire.MapDecoder(LIMITS, what, allow_non_finite=not finite)
    answers: list[object] = []
    for convert in (
        lambda: decoder(entries),  # type: ignore[arg-type]
        lambda: values.plain_map(
            getattr(event, what + "s"), LIMITS, what, allow_non_finite=not finite
        ),
    ):
        try:
            answers.append(convert())
        except TrackdError as error:
            answers.append((type(error), str(error)))
    return tuple(answers)


def _comparable(answer: object) -> str:
    if isinstance(answer, tuple) and len(answer) == 4:  # a TrackInput: sort its maps
        return repr((*answer[:2], *(_comparable(m) for m in answer[2:])))
    # Sorted: a map's order is the wire's or the runtime's, neither of them meaningful. And
    # compared as text, because NaN is not equal to itself.
    return repr(sorted(answer.items()) if isinstance(answer, dict) else answer)


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


@pytest.mark.parametrize("finite", [False, True], ids=["attributes", "tags"])
@pytest.mark.parametrize("name", list(MAPS))
def test_a_decoded_map_equals_plain_map_of_the_parsed_one(name: str, finite: bool) -> None:
    what = "tag" if finite else "attribute"
    event = _event(MAPS[name]) if what == "attribute" else _event({}, MAPS[name])
    viewed = wire.TrackRequestView.FromString(event.SerializeToString())
    decoded, expected = _both(getattr(viewed, what + "s"), event, what, finite)
    assert _comparable(decoded) == _comparable(expected)


def test_the_view_reads_every_field_of_a_batch() -> None:
    first = _event({"device": _value(string_value="iPad")}, {"revenue": _value(number_value=42)})
    second = pb.TrackRequest(event_key="buy", user_id="u-2")
    view = _view(first, second, sequence=2**64 - 1)
    assert view.sequence == 2**64 - 1  # type: ignore[attr-defined]
    events = [wire.EventReader(LIMITS).read(raw) for raw in view.events]  # type: ignore[attr-defined]
    assert events == [
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


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _reference(raw: bytes, limits: values.Limits) -> object:
    """What Track makes of the same bytes: the generated parser, then trackd.values."""
    try:
        event = pb.TrackRequest.FromString(raw)
    except DecodeError:
        return InvalidArgument
    try:
        return (
            values.require_key(event.event_key, "event_key", limits),
            values.require_user_id(event.user_id, limits),
            values.plain_map(event.attributes, limits, "attribute"),
            values.plain_map(event.tags, limits, "tag", allow_non_finite=False),
        )
    except TrackdError as error:
        return (type(error), str(error))


_DEVICE = _field(3, _field(1, b"device") + _field(2, _field(3, b"iPad")))
_NAN_TAG = _field(4, _field(1, b"n") + _field(2, b"\x11" + struct.pack("<d", math.nan)))
_CANONICAL = _field(1, b"signup") + _field(2, b"u-1") + _DEVICE
RAW_EVENTS = {
    "canonical": _CANONICAL,
    "same tail, other user": _field(1, b"signup") + _field(2, b"u-2") + _DEVICE,
    "no maps": _field(1, b"signup") + _field(2, b"u-3"),
    "long user id (two-byte length)": _field(1, b"buy") + _field(2, b"u" * 300) + _DEVICE,
    "user id over the limit": _field(1, b"buy") + _field(2, b"u" * 1100) + _DEVICE,
    "user id of 20000 (three-byte length)": _field(1, b"buy") + _field(2, b"u" * 20000),
    "key over the limit": _field(1, b"k" * 300) + _field(2, b"u-1") + _DEVICE,
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
}


@pytest.mark.parametrize("name", list(RAW_EVENTS))
def test_a_raw_event_reads_as_track_reads_it(name: str) -> None:
    limits = values.Limits()
    reader = wire.EventReader(limits)
    raw = RAW_EVENTS[name]
    expected = _comparable(_reference(raw, limits))
    for _ in range(2):  # first sight, then remembered
        try:
            got: object = reader.read(raw)
        except TrackdError as error:
            got = (
                InvalidArgument
                if "not a valid protobuf" in str(error)
                else (type(error), str(error))
            )
        assert _comparable(got) == expected


def test_remembered_maps_serve_every_event_with_the_same_tail() -> None:
    reader = wire.EventReader(values.Limits())
    events = [
        reader.read(_field(1, b"signup") + _field(2, f"u-{n}".encode()) + _DEVICE) for n in range(3)
    ]
    assert [e[1] for e in events] == ["u-0", "u-1", "u-2"]
    assert all(e[2] == {"device": "iPad"} for e in events)
    assert events[1][2] is events[0][2]  # decoded once
    assert len(reader._maps) == 1  # one tail, split by hand for every event


def test_a_repeated_key_keeps_its_last_value_as_the_parser_does() -> None:
    entry = pb.TrackRequest.AttributesEntry
    raw = [
        entry(key="k", value=_value(string_value="first")).SerializeToString(),
        entry(key="k", value=_value(string_value="last")).SerializeToString(),
    ]
    wire_bytes = b"".join(b"\x1a" + bytes([len(r)]) + r for r in raw)
    parsed = pb.TrackRequest.FromString(wire_bytes)
    assert wire.MapDecoder(LIMITS, "attribute")(raw) == values.plain_map(
        parsed.attributes, LIMITS, "attribute"
    )
    assert wire.MapDecoder(LIMITS, "attribute")(raw) == {"k": "last"}


def test_an_undecodable_entry_is_invalid_argument() -> None:
    bad_utf8_key = b"\x0a\x02\xc3\x28"
    with pytest.raises(InvalidArgument, match="not a valid protobuf map"):
        wire.MapDecoder(LIMITS, "attribute")([bad_utf8_key])


def test_errors_are_raised_every_time_and_never_remembered() -> None:
    decoder = wire.MapDecoder(LIMITS, "attribute")
    raw = [
        pb.TrackRequest.AttributesEntry(key=k, value=_value(string_value="x")).SerializeToString()
        for k in "abcd"
    ]
    for _ in range(2):
        with pytest.raises(ResourceExhausted):
            decoder(raw)


def test_memory_is_bounded_and_answers_stay_right_past_it() -> None:
    decoder = wire.MapDecoder(values.Limits(), "attribute")

    def entries(n: int) -> list[bytes]:
        value = _value(string_value=f"v{n}")
        return [pb.TrackRequest.AttributesEntry(key="k", value=value).SerializeToString()]

    for n in range(wire.MAX_REMEMBERED + 10):
        assert decoder(entries(n)) == {"k": f"v{n}"}
    assert len(decoder._memory) <= wire.MAX_REMEMBERED
    assert decoder(entries(0)) == {"k": "v0"}
