"""Typed reads of datafile JSON: each names the path of what is missing or of the wrong kind."""

from __future__ import annotations

from typing import Any

from trackd.errors import DatafileError

JsonObject = dict[str, Any]


def required(parent: JsonObject, key: str, where: str) -> Any:
    if key not in parent:
        raise DatafileError(f"missing required key {key!r}" + (f" in {where}" if where else ""))
    return parent[key]


def string(parent: JsonObject, key: str, where: str) -> str:
    value = required(parent, key, where)
    if not isinstance(value, str):
        raise wrong_kind(path_of(where, key), "a string", value)
    return value


def array(parent: JsonObject, key: str, where: str) -> list[Any]:
    value = required(parent, key, where)
    if not isinstance(value, list):
        raise wrong_kind(path_of(where, key), "an array", value)
    return value


def strings(parent: JsonObject, key: str, where: str) -> list[str]:
    values = array(parent, key, where)
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise wrong_kind(f"{path_of(where, key)}[{index}]", "a string", value)
    return values


def json_object(value: object, where: str) -> JsonObject:
    if not isinstance(value, dict):
        raise wrong_kind(where, "an object", value)
    return value


def optional(
    parent: JsonObject, key: str, kind: type, expected: str, default: Any, where: str = ""
) -> Any:
    """An optional value; null counts as absent."""
    value = parent.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise wrong_kind(path_of(where, key), expected, value)
    return value


def path_of(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def wrong_kind(path: str, expected: str, value: object) -> DatafileError:
    return DatafileError(f"{path!r} must be {expected}, got {kind_of(value)}")


def kind_of(value: object) -> str:
    """The JSON name of a decoded value's kind."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
