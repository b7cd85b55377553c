"""Decide's response in proto3 JSON (what Connect JSON callers get) without json_format.

`json_format.MessageToJson` took ~3,400 us for a 50-flag DecideResponse, twice the rest of
the call, so Decide over HTTP cost the daemon twice gRPC's CPU. The response arrives here as
the bytes `trackd.rpc.decisions.DecideEncoder` joined: one frame per decision, most of them
the very frames it keeps for a datafile's shared decisions. Each frame's JSON is made once
and kept, keyed by the frame's bytes (equal bytes are an equal message, so an equal JSON),
and a response is those fragments joined: printed exactly as `MessageToJson(indent=None)`
prints it, byte for byte.
"""

from __future__ import annotations

import json
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.struct_pb2 import Struct

from trackd.rpc import values
from trackd.rpc.decisions import CACHE_LIMIT
from trackd.v1 import tracking_service_pb2 as pb

_DECISIONS: Final = pb.DecideResponse.DESCRIPTOR.fields_by_name["decisions"]
_REVISION: Final = pb.DecideResponse.DESCRIPTOR.fields_by_name["revision"]
_LENGTH_DELIMITED: Final = 2
_DECISION_TAG: Final = _DECISIONS.number << 3 | _LENGTH_DELIMITED
_REVISION_TAG: Final = _REVISION.number << 3 | _LENGTH_DELIMITED
_DECISIONS_OPEN: Final = json.dumps(_DECISIONS.json_name) + ": ["
_REVISION_KEY: Final = json.dumps(_REVISION.json_name) + ": "


class DecideJson:
    """Serialized DecideResponses as proto3 JSON, each decision's fragment kept."""

    def __init__(self) -> None:
        self._fragments: dict[bytes, str] = {}

    def encode(self, data: bytes) -> bytes:
        fragments: list[str] = []
        revision: str | None = None
        position, end = 0, len(data)
        while position < end:
            tag = data[position]
            length, start = _varint_at(data, position + 1)
            position = start + length
            if tag == _DECISION_TAG:
                fragments.append(self._fragment(data[start:position]))
            elif tag == _REVISION_TAG:
                revision = data[start:position].decode()
            else:  # not what DecideEncoder writes: json_format reads anything
                message = pb.DecideResponse.FromString(data)
                return json_format.MessageToJson(message, indent=None).encode()
        members = []
        if fragments:
            members.append(_DECISIONS_OPEN + ", ".join(fragments) + "]")
        if revision:
            members.append(_REVISION_KEY + json.dumps(revision))
        return ("{" + ", ".join(members) + "}").encode()

    def _fragment(self, frame: bytes) -> str:
        fragment = self._fragments.get(frame)
        if fragment is not None:
            return fragment
        decision = pb.FlagDecision.FromString(frame)
        fragment = json.dumps(message_json(decision))
        if not decision.reasons:  # one with reasons is this call's alone: not worth keeping
            if len(self._fragments) >= CACHE_LIMIT:
                self._fragments.clear()
            self._fragments[frame] = fragment
        return fragment


def message_json(message: Any) -> dict[str, Any]:
    """A message of strings, bools, enums, Structs and repeated strings (a FlagDecision) as
    `json_format.MessageToDict` gives it: set fields only, in field number order, by their
    JSON names, enums by name. Any other kind of field is a TypeError, so a field of a new
    kind added to the proto is not silently printed wrong."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.message_type is Struct.DESCRIPTOR:
            out[field.json_name] = values.plain_struct(value)
        elif field.type == FieldDescriptor.TYPE_ENUM:
            known = field.enum_type.values_by_number.get(value)
            out[field.json_name] = value if known is None else known.name  # open enum
        elif field.type in _AS_THEY_ARE:
            out[field.json_name] = list(value) if field.is_repeated else value
        else:
            raise TypeError(f"{field.full_name}: no fast JSON for this kind of field")
    return out


_AS_THEY_ARE: Final = frozenset({FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BOOL})


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
