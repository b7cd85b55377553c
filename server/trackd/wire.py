"""A faster way to read TrackStream batches: the same bytes, parsed with map fields left raw.

Reading a `map<string, google.protobuf.Value>` through the protobuf runtime costs a Python
object per entry and per Value, and a TrackStream batch carries two such maps per event:
that was a third of trackd's time under streaming load. Producers repeat themselves (the
same device, country, plan and tags over and over), so the batch is parsed with views of
`TrackStreamRequest` and `TrackRequest` whose map fields are `repeated bytes` (a map entry
is a length-delimited message, so the wire format is identical), and each distinct run of
entry bytes is decoded once, by the real parser, and remembered.

The views are built at import from the generated descriptors, so they cannot drift from
`proto/`: every field keeps its number and type except the maps. They are never sent, only
parsed, and they are not part of the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import Value

from trackd import values
from trackd.datafile.model import AttributeValue
from trackd.errors import InvalidArgument
from trackd.v1 import tracking_service_pb2 as pb

_PACKAGE: Final = "trackd.wire"


def _is_map(field: Any) -> bool:
    message = field.message_type
    return message is not None and message.GetOptions().map_entry


def _view(source: Any, name: str, retyped: dict[str, str]) -> descriptor_pb2.DescriptorProto:
    """`source` with its map fields as `repeated bytes` and the message fields named in
    `retyped` pointing at other views."""
    view = descriptor_pb2.DescriptorProto()
    source.CopyToProto(view)
    view.name = name
    del view.nested_type[:]  # the map entry types: the raw fields need none
    for field in view.field:
        if _is_map(source.fields_by_name[field.name]):
            field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
            field.ClearField("type_name")
        elif field.name in retyped:
            field.type_name = f".{_PACKAGE}.{retyped[field.name]}"
    return view


def _entry(source: Any) -> descriptor_pb2.DescriptorProto:
    """A map's entry type (key = 1, value = 2) as an ordinary message."""
    entry = descriptor_pb2.DescriptorProto()
    source.CopyToProto(entry)
    entry.name = "ValueEntry"
    entry.ClearField("options")
    return entry


def _build() -> tuple[type[Any], type[Any]]:
    pool = descriptor_pool.Default()
    file = descriptor_pb2.FileDescriptorProto(
        name="trackd/wire/views.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=[pb.DESCRIPTOR.name, "google/protobuf/struct.proto"],
    )
    event = pb.TrackRequest.DESCRIPTOR
    file.message_type.append(_view(event, "TrackRequestView", {}))
    file.message_type.append(
        _view(
            pb.TrackStreamRequest.DESCRIPTOR,
            "TrackStreamRequestView",
            {"events": "TrackRequestView"},
        )
    )
    file.message_type.append(_entry(event.fields_by_name["attributes"].message_type))
    pool.Add(file)
    built = pool.FindFileByName(file.name)
    batch = message_factory.GetMessageClass(built.message_types_by_name["TrackStreamRequestView"])
    entry = message_factory.GetMessageClass(built.message_types_by_name["ValueEntry"])
    return batch, entry


TrackStreamRequestView, _ValueEntry = _build()
"""`TrackStreamRequestView.FromString(data)` reads a TrackStreamRequest; each event's
`attributes` and `tags` are its map entries as bytes, for a `MapDecoder`."""

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


__all__ = ["MAX_REMEMBERED", "MapDecoder", "TrackStreamRequestView"]
