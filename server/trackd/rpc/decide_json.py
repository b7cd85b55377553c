"""Decide's response in proto3 JSON (what Connect JSON callers get) without json_format.

`json_format.MessageToJson` took 1,700-3,400 us for a 50-flag DecideResponse, more than the
rest of the call, so Decide over HTTP cost the daemon 1.4-2.2x gRPC's CPU. The response
arrives here as the bytes `trackd.rpc.decisions.DecideEncoder` joined: one frame per
decision, most of them the very frames it keeps for a datafile's shared decisions. Each
frame's JSON is made once and kept, keyed by the frame's bytes (equal bytes are an equal
message, so an equal JSON), and a response is those fragments joined, printed exactly as
`MessageToJson(indent=None)` prints it, byte for byte. Measured in-process for 50 flags:
~45 us against ~1,700 us; with INCLUDE_REASONS (frames made per call, so printed each
time, their variables kept) ~650 us against ~1,900 us."""

from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _quoted  # json.dumps' own, for a str
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.struct_pb2 import Struct

from trackd.kept import kept
from trackd.rpc import values
from trackd.rpc.decisions import CACHE_LIMIT
from trackd.v1 import tracking_service_pb2 as pb

_DECISIONS: Final = pb.DecideResponse.DESCRIPTOR.fields_by_name["decisions"]
_REVISION: Final = pb.DecideResponse.DESCRIPTOR.fields_by_name["revision"]
_LENGTH_DELIMITED: Final = 2
_DECISION_TAG: Final = _DECISIONS.number << 3 | _LENGTH_DELIMITED
_REVISION_TAG: Final = _REVISION.number << 3 | _LENGTH_DELIMITED
_DECISIONS_OPEN: Final = _quoted(_DECISIONS.json_name) + ": ["
_REVISION_KEY: Final = _quoted(_REVISION.json_name) + ": "


class DecideJson:
    """Serialized DecideResponses as proto3 JSON, each decision's fragment kept."""

    def __init__(self) -> None:
        self._fragments: dict[bytes, str] = {}
        # A decision with reasons is this call's alone, but its variables are its variation's.
        variables = values.KeptStructs(struct_text, CACHE_LIMIT)
        self._members = member_printers(pb.FlagDecision.DESCRIPTOR, variables)

    def encode(self, data: bytes) -> bytes:
        parts = response_parts(data)
        if parts is None:  # not what DecideEncoder writes: json_format reads anything
            message = pb.DecideResponse.FromString(data)
            return json_format.MessageToJson(message, indent=None).encode()
        frames, revision = parts
        fragments = [self._fragment(frame) for frame in frames]
        members = []
        if fragments:
            members.append(_DECISIONS_OPEN + ", ".join(fragments) + "]")
        if revision:
            members.append(_REVISION_KEY + _quoted(revision))
        return ("{" + ", ".join(members) + "}").encode()

    def _fragment(self, frame: bytes) -> str:
        fragment = self._fragments.get(frame)
        if fragment is not None:
            return fragment
        decision = pb.FlagDecision.FromString(frame)
        printers = self._members
        members = [printers[field.number](value) for field, value in decision.ListFields()]
        fragment = "{" + ", ".join(members) + "}"
        if decision.reasons:  # one with reasons is this call's alone: not worth keeping
            return fragment
        return kept(self._fragments, frame, fragment, CACHE_LIMIT)


def response_parts(data: bytes) -> tuple[list[bytes], str] | None:
    """A serialized DecideResponse's decisions (each a serialized FlagDecision) and revision
    (the last one given, as a parse keeps), read without parsing them; None when the bytes
    hold a field `DecideEncoder` never writes, which only a parse of the whole reads."""
    frames: list[bytes] = []
    revision = ""
    position, end = 0, len(data)
    while position < end:
        tag = data[position]
        if tag != _DECISION_TAG and tag != _REVISION_TAG:
            return None
        length, start = _varint_at(data, position + 1)
        position = start + length
        if tag == _DECISION_TAG:
            frames.append(data[start:position])
        else:
            revision = data[start:position].decode()
    return frames, revision


def struct_text(struct: Struct) -> str:
    return json.dumps(values.plain_struct(struct))


def member_printers(
    descriptor: Any, struct_text: Callable[[Struct], str] = struct_text
) -> dict[int, Callable[[Any], str]]:
    """Field number -> the function printing a set field of that message type as a JSON
    member, as `json_format.MessageToJson(indent=None)` prints it: by its JSON name, enums by
    name (an unknown number as the number), Structs by `struct_text`. For strings, bools,
    enums, Structs and repeated strings (a FlagDecision's fields); a field of any other kind
    is a TypeError here, so one added to the proto is never printed wrong."""
    printers: dict[int, Callable[[Any], str]] = {}
    for field in descriptor.fields:
        printers[field.number] = _printer(field, _quoted(field.json_name) + ": ", struct_text)
    return printers


def _printer(field: Any, name: str, struct_text: Callable[[Struct], str]) -> Callable[[Any], str]:
    if field.message_type is Struct.DESCRIPTOR and not field.is_repeated:
        return lambda struct: name + struct_text(struct)
    if field.type == FieldDescriptor.TYPE_ENUM and not field.is_repeated:
        names = {value.number: _quoted(value.name) for value in field.enum_type.values}
        return lambda number: name + names.get(number, str(number))
    if field.type == FieldDescriptor.TYPE_BOOL and not field.is_repeated:
        return lambda flag: name + ("true" if flag else "false")
    if field.type == FieldDescriptor.TYPE_STRING:
        if field.is_repeated:
            return lambda texts: name + "[" + ", ".join(map(_quoted, texts)) + "]"
        return lambda text: name + _quoted(text)
    raise TypeError(f"{field.full_name}: no fast JSON for this kind of field")


def _varint_at(data: bytes, position: int) -> tuple[int, int]:
    """The varint starting at `position`, and the position after it."""
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
