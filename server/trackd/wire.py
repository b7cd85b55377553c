"""A faster way to read TrackStream batches: the same bytes, parsed only as far as needed.

Reading a `map<string, google.protobuf.Value>` through the protobuf runtime costs a Python
object per entry and per Value, and a TrackStream batch carries two such maps per event:
that was a third of trackd's time under streaming load. Producers repeat themselves (the
same device, country, plan and tags over and over), so:

- a batch is parsed as `TrackStreamRequestView`, whose events are left as bytes;
- an event written the way every protobuf runtime writes it (event_key, then user_id, then
  the maps) is split by hand, and the bytes after user_id, both maps at once, are looked up
  in a bounded memory of what they decoded to;
- anything else, and every first sight of a run of map bytes, is parsed as
  `TrackRequestView` (the maps as raw entries, each distinct map decoded once by the real
  parser), which also checks that the hand split read what the parser reads.

The views are built at import from the generated descriptors, so they cannot drift from
`proto/`: every field keeps its number and type except the maps and the events. They are
only ever parsed, never sent, and are not part of the API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import Value

from trackd import values
from trackd.datafile.model import AttributeValue
from trackd.errors import InvalidArgument
from trackd.tracking import TrackInput
from trackd.v1 import tracking_service_pb2 as pb

_PACKAGE: Final = "trackd.wire"


def _is_map(field: Any) -> bool:
    message = field.message_type
    return message is not None and message.GetOptions().map_entry


def _view(source: Any, name: str, raw: frozenset[str]) -> descriptor_pb2.DescriptorProto:
    """`source` with its map fields, and the message fields named in `raw`, as bytes."""
    view = descriptor_pb2.DescriptorProto()
    source.CopyToProto(view)
    view.name = name
    del view.nested_type[:]  # the map entry types: the raw fields need none
    for field in view.field:
        if field.name in raw or _is_map(source.fields_by_name[field.name]):
            field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
            field.ClearField("type_name")
    return view


def _entry(source: Any) -> descriptor_pb2.DescriptorProto:
    """A map's entry type (key = 1, value = 2) as an ordinary message."""
    entry = descriptor_pb2.DescriptorProto()
    source.CopyToProto(entry)
    entry.name = "ValueEntry"
    entry.ClearField("options")
    return entry


def _build() -> tuple[type[Any], type[Any], type[Any]]:
    pool = descriptor_pool.Default()
    file = descriptor_pb2.FileDescriptorProto(
        name="trackd/wire/views.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=[pb.DESCRIPTOR.name, "google/protobuf/struct.proto"],
    )
    event = pb.TrackRequest.DESCRIPTOR
    file.message_type.append(_view(event, "TrackRequestView", frozenset()))
    file.message_type.append(
        _view(pb.TrackStreamRequest.DESCRIPTOR, "TrackStreamRequestView", frozenset({"events"}))
    )
    file.message_type.append(_entry(event.fields_by_name["attributes"].message_type))
    pool.Add(file)
    built = pool.FindFileByName(file.name)
    classes = (
        message_factory.GetMessageClass(built.message_types_by_name[name])
        for name in ("TrackStreamRequestView", "TrackRequestView", "ValueEntry")
    )
    batch, event_view, entry = classes
    return batch, event_view, entry


TrackStreamRequestView, TrackRequestView, _ValueEntry = _build()
"""`TrackStreamRequestView.FromString(data)` reads a TrackStreamRequest with its events as
bytes, for an `EventReader`. `TrackRequestView` reads one with its maps as raw entries."""

# Distinct maps remembered per decoder; past it the memory starts afresh (a producer whose
# maps never repeat pays one dict lookup more per map than decoding alone).
MAX_REMEMBERED: Final = 8192


class MapDecoder:
    """Raw map entries -> the plain dict `values.plain_map` makes of the same map, with the
    same errors. Dicts it returns are shared between events and must not be mutated."""

    __slots__ = ("_allow_non_finite", "_limits", "_memory", "_what")

    def __init__(self, limits: values.Limits, what: str, *, allow_non_finite: bool = True) -> None:
        self._limits = limits
        self._what = what
        self._allow_non_finite = allow_non_finite
        self._memory: dict[tuple[bytes, ...], dict[str, AttributeValue]] = {}

    def __call__(self, entries: Sequence[bytes]) -> dict[str, AttributeValue]:
        if not entries:
            return {}
        key = tuple(entries)
        found = self._memory.get(key)
        if found is None:
            found = self._decode(key)
            if len(self._memory) >= MAX_REMEMBERED:
                self._memory.clear()
            self._memory[key] = found
        return found

    def _decode(self, entries: tuple[bytes, ...]) -> dict[str, AttributeValue]:
        # As the protobuf runtime reads a map: entries in order, a repeated key keeps the
        # last value, a missing value is the default (null) Value.
        parsed: dict[str, Value] = {}
        for raw in entries:
            try:
                entry = _ValueEntry.FromString(raw)
            except DecodeError as error:
                raise InvalidArgument(
                    f"{self._what}s are not a valid protobuf map: {error}"
                ) from None
            parsed[entry.key] = entry.value
        limits = self._limits
        values.check_count(len(parsed), limits, self._what)
        return {
            key: values.plain_value(key, value, limits, self._what, self._allow_non_finite)
            for key, value in parsed.items()
        }


_EVENT_KEY: Final = 1 << 3 | 2  # the tag bytes of fields 1 and 2, length-delimited
_USER_ID: Final = 2 << 3 | 2

_new = tuple.__new__  # what TrackInput(...) calls, without its Python-level __new__


class EventReader:
    """Raw TrackStream events -> `TrackInput`s, checked as the servicer checks a Track request
    (event_key, then user_id, then the maps), with the errors the protobuf runtime and
    `trackd.values` would raise."""

    __slots__ = ("_attributes", "_limits", "_maps", "_tags")

    def __init__(self, limits: values.Limits) -> None:
        self._limits = limits
        self._attributes = MapDecoder(limits, "attribute")
        self._tags = MapDecoder(limits, "tag", allow_non_finite=False)
        # The bytes after user_id -> (attributes, tags), or None when that tail holds more
        # than the maps (the event is then always parsed whole).
        self._maps: dict[bytes, tuple[Mapping[str, AttributeValue], ...] | None] = {}

    def read(self, raw: bytes) -> TrackInput:
        # The hand split: field 1 with a one-byte length, then field 2 with a one- or
        # two-byte one; then the tail, looked up: () never seen, None not only maps.
        size = len(raw)
        if size > 3 and raw[0] == _EVENT_KEY and raw[1] < 0x80:
            key_end = 2 + raw[1]
            if key_end + 2 < size and raw[key_end] == _USER_ID:
                start = key_end + 2
                length = raw[key_end + 1]
                if length >= 0x80:  # a longer varint than two bytes: no split
                    length = (length & 0x7F) | raw[start] << 7 if raw[start] < 0x80 else size
                    start += 1
                end = start + length
                if end <= size:
                    tail = raw[end:]
                    maps = self._maps.get(tail, ())
                    if maps is not None:
                        try:
                            key = raw[2:key_end].decode()
                            user_id = raw[start:end].decode()
                        except UnicodeDecodeError:
                            return self._parsed(raw)  # which says what is wrong
                        if not maps:
                            return self._first_sight(raw, key, user_id, tail)
                        limits = self._limits
                        if 0 < len(key) <= limits.max_key_length and (
                            0 < len(user_id) <= limits.max_user_id_length
                        ):
                            return _new(TrackInput, (key, user_id, maps[0], maps[1]))
        return self._parsed(raw)

    def _first_sight(self, raw: bytes, key: str, user_id: str, tail: bytes) -> TrackInput:
        event = self._parsed(raw)
        # Only a tail of nothing but maps can be remembered: a repeated event_key or user_id
        # there would override the split's (the last one wins).
        split = event.event_key == key and event.user_id == user_id
        if len(self._maps) >= MAX_REMEMBERED:
            self._maps.clear()
        self._maps[tail] = (event.attributes, event.tags) if split else None
        return event

    def _parsed(self, raw: bytes) -> TrackInput:
        try:
            event = TrackRequestView.FromString(raw)
        except DecodeError as error:
            raise InvalidArgument(f"the event is not a valid protobuf message: {error}") from None
        limits = self._limits
        return TrackInput(
            values.require_key(event.event_key, "event_key", limits),
            values.require_user_id(event.user_id, limits),
            self._attributes(event.attributes),
            self._tags(event.tags),
        )


__all__ = [
    "MAX_REMEMBERED",
    "EventReader",
    "MapDecoder",
    "TrackRequestView",
    "TrackStreamRequestView",
]
