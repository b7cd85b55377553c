"""trackd.wire: TrackStream batches read with raw maps give what the generated parser gives."""

from __future__ import annotations

import math

import pytest
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
    viewed = _view(event).events[0]  # type: ignore[attr-defined]
    decoded, expected = _both(getattr(viewed, what + "s"), event, what, finite)
    assert _comparable(decoded) == _comparable(expected)


def test_the_view_reads_every_field_of_a_batch() -> None:
    first = _event({"device": _value(string_value="iPad")}, {"revenue": _value(number_value=42)})
    second = pb.TrackRequest(event_key="buy", user_id="u-2")
    view = _view(first, second, sequence=2**64 - 1)
    assert view.sequence == 2**64 - 1  # type: ignore[attr-defined]
    events = view.events  # type: ignore[attr-defined]
    assert [(e.event_key, e.user_id) for e in events] == [("signup", "u-1"), ("buy", "u-2")]
    decoder = wire.MapDecoder(LIMITS, "attribute")
    assert decoder(events[0].attributes) == {"device": "iPad"}
    assert decoder(events[0].tags) == {"revenue": 42}
    assert decoder(events[1].attributes) == {}


def test_the_views_keep_every_field_number_of_the_api() -> None:
    """A field added to TrackRequest or TrackStreamRequest appears in the view: never an
    unknown field silently dropped from streamed events."""
    batch = wire.TrackStreamRequestView.DESCRIPTOR
    for api, view in (
        (pb.TrackStreamRequest.DESCRIPTOR, batch),
        (pb.TrackRequest.DESCRIPTOR, batch.fields_by_name["events"].message_type),
    ):
        assert {f.number: f.name for f in api.fields} == {f.number: f.name for f in view.fields}


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
