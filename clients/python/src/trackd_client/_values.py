"""Plain Python values -> google.protobuf.Value, as trackd accepts them for attributes and tags.

trackd accepts strings, numbers, booleans and null; lists and structs are rejected by the
daemon with INVALID_ARGUMENT, so they are refused here, before the network, with TypeError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.struct_pb2 import NULL_VALUE, Struct, Value

Scalar = str | int | float | bool | None
"""What an attribute or tag value may be."""

Json = Any
"""A value read back from trackd: a Scalar, or a list or dict of them (a json variable)."""

# A protobuf number is a double: larger integers would silently change value.
_EXACT_INT_LIMIT = 2**53


def to_value(value: Scalar) -> Value:
    """Converts one scalar; raises TypeError for anything else and ValueError for huge ints."""
    if value is None:
        return Value(null_value=NULL_VALUE)
    if isinstance(value, bool):  # before int: bool is an int subclass
        return Value(bool_value=value)
    if isinstance(value, int):
        if not -_EXACT_INT_LIMIT <= value <= _EXACT_INT_LIMIT:
            raise ValueError(f"integer {value} is not exactly representable as a double")
        return Value(number_value=float(value))
    if isinstance(value, float):
        return Value(number_value=value)
    if isinstance(value, str):
        return Value(string_value=value)
    raise TypeError(
        f"unsupported value of type {type(value).__name__}: trackd accepts only str, int,"
        " float, bool and None"
    )


def to_value_map(values: Mapping[str, Scalar] | None, what: str = "attributes") -> dict[str, Value]:
    """Converts an attributes or tags dict; None means empty."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise TypeError(f"{what} must be a mapping, not {type(values).__name__}")
    out: dict[str, Value] = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise TypeError(f"{what}: keys must be str, not {type(key).__name__}")
        try:
            out[key] = to_value(value)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{what}[{key!r}]: {error}") from None
    return out


def from_value(value: Value) -> Json:
    """The inverse of to_value, for reading values back (whole numbers become int).

    Lists and structs (a flag's json variables) become lists and dicts, converted likewise.
    """
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and -_EXACT_INT_LIMIT <= number <= _EXACT_INT_LIMIT:
            return int(number)
        return number
    if kind in (None, "null_value"):
        return None
    if kind == "list_value":
        return [from_value(item) for item in value.list_value.values]
    if kind == "struct_value":
        return from_struct(value.struct_value)
    raise TypeError(f"unsupported Value kind {kind}")


def from_struct(struct: Struct) -> dict[str, Json]:
    """A google.protobuf.Struct (a decision's variables) as a plain dict."""
    return {key: from_value(value) for key, value in struct.fields.items()}
