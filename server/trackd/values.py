"""google.protobuf.Value maps -> plain Python values, with the request limits enforced.

Protobuf numbers are doubles; a JSON client writing `31` means the integer 31, so a whole
double within 2**53 becomes an int (which is also what the Optimizely SDK would have seen).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.struct_pb2 import Value

from trackd.datafile.model import AttributeValue
from trackd.errors import InvalidArgument, ResourceExhausted

_EXACT_INT_LIMIT = 2.0**53


@dataclass(frozen=True, slots=True)
class Limits:
    """The documented per-request caps (see `trackd.config.OPTIONS`)."""

    max_entries: int = 100
    max_key_length: int = 256
    max_user_id_length: int = 1024
    max_string_value_length: int = 8192


def number(value: float) -> int | float:
    if value.is_integer() and -_EXACT_INT_LIMIT <= value <= _EXACT_INT_LIMIT:
        return int(value)
    return value


def plain_map(
    values: Mapping[str, Value], limits: Limits, what: str, *, allow_non_finite: bool = True
) -> dict[str, AttributeValue]:
    """Converts attributes or tags; lists and structs are rejected with INVALID_ARGUMENT."""
    if len(values) > limits.max_entries:
        raise ResourceExhausted(f"too many {what}: {len(values)} (limit {limits.max_entries})")
    out: dict[str, AttributeValue] = {}
    for key, value in values.items():
        if not key:
            raise InvalidArgument(f"{what}: an empty name is not allowed")
        if len(key) > limits.max_key_length:
            raise InvalidArgument(f"{what}: name longer than {limits.max_key_length} characters")
        kind = value.WhichOneof("kind")
        if kind == "string_value":
            text = value.string_value
            if len(text) > limits.max_string_value_length:
                raise InvalidArgument(
                    f"{what} {key!r}: string longer than {limits.max_string_value_length}"
                    " characters"
                )
            out[key] = text
        elif kind == "number_value":
            num = value.number_value
            if not allow_non_finite and not math.isfinite(num):
                raise InvalidArgument(f"{what} {key!r}: NaN and infinity are not allowed")
            out[key] = number(num)
        elif kind == "bool_value":
            out[key] = value.bool_value
        elif kind == "null_value" or kind is None:
            out[key] = None
        else:
            kind_name = "a list" if kind == "list_value" else "a struct"
            raise InvalidArgument(
                f"{what} {key!r} is {kind_name}; only strings, numbers, booleans and null are"
                " allowed"
            )
    return out


def require_key(value: str, field: str, limits: Limits) -> str:
    if not value:
        raise InvalidArgument(f"{field} must not be empty")
    if len(value) > limits.max_key_length:
        raise InvalidArgument(f"{field} is longer than {limits.max_key_length} characters")
    return value


def require_user_id(value: str, limits: Limits) -> str:
    if not value:
        raise InvalidArgument("user_id must not be empty")
    if len(value) > limits.max_user_id_length:
        raise InvalidArgument(f"user_id is longer than {limits.max_user_id_length} characters")
    return value
