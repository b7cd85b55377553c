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


def plain_map(
    values: Mapping[str, Value], limits: Limits, what: str, *, allow_non_finite: bool = True
) -> dict[str, AttributeValue]:
    """Converts attributes or tags; lists and structs are rejected with INVALID_ARGUMENT.

    Iterates keys and indexes: cheaper than .items() on a protobuf map.
    """
    out: dict[str, AttributeValue] = {}
    if not values:
        return out
    check_count(len(values), limits, what)
    for key in values:
        out[key] = plain_value(key, values[key], limits, what, allow_non_finite)
    return out


def check_count(entries: int, limits: Limits, what: str) -> None:
    if entries > limits.max_entries:
        raise ResourceExhausted(f"too many {what}s: {entries} (limit {limits.max_entries})")


def plain_value(
    key: str, value: Value, limits: Limits, what: str, allow_non_finite: bool
) -> AttributeValue:
    """One entry of an attribute or tag map, its name checked too."""
    max_key = limits.max_key_length
    if not 0 < len(key) <= max_key:
        raise InvalidArgument(f"{what} name must be 1 to {max_key} characters, got {len(key)}")
    # Strings are the common case, and HasField is cheaper than WhichOneof.
    if value.HasField("string_value"):
        text = value.string_value
        if len(text) > limits.max_string_value_length:
            raise InvalidArgument(
                f"{what} {key!r}: string longer than {limits.max_string_value_length} characters"
            )
        return text
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        num = value.number_value
        if num.is_integer() and -_EXACT_INT_LIMIT <= num <= _EXACT_INT_LIMIT:
            return int(num)
        if allow_non_finite or math.isfinite(num):
            return num
        raise InvalidArgument(f"{what} {key!r}: NaN and infinity are not allowed")
    if kind == "bool_value":
        return value.bool_value
    if kind == "null_value" or kind is None:
        return None
    kind_name = "a list" if kind == "list_value" else "a struct"
    raise InvalidArgument(
        f"{what} {key!r} is {kind_name}; only strings, numbers, booleans and null are allowed"
    )


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
