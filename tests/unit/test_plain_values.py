"""`values.plain_struct` gives exactly what `json_format.MessageToDict` gives for a Struct,
over every flag variable a generated datafile decides and over Value's edge cases."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct, Value

from bench.gen_datafile import build_flags
from trackd.datafile import parse_datafile
from trackd.decision.flags import decide_all
from trackd.rpc import values
from trackd.rpc.decisions import flag_decision

EDGES: dict[str, Any] = {
    "int": 31,
    "negative": -7,
    "zero": 0,
    "fraction": 0.1,
    "big": 2**60,
    "tiny": 5e-324,
    "huge": 1.7976931348623157e308,
    "true": True,
    "false": False,
    "null": None,
    "empty_text": "",
    "unicode": 'Grüße, 世界 \U0001f600 "quoted" \\ \n',
    "empty_list": [],
    "empty_struct": {},
    "nested": {"a": [1, [2.5, [None, {"b": "c"}]], {"d": {"e": []}}], "f": {"g": False}},
}


def _struct(content: dict[str, Any]) -> Struct:
    struct = Struct()
    struct.update(content)
    return struct


def test_value_edge_cases_convert_as_json_format_does() -> None:
    struct = _struct(EDGES)
    struct.fields["unset"].CopyFrom(Value())  # no kind at all: null, as json_format says
    got = values.plain_struct(struct)
    expected = json_format.MessageToDict(struct)
    assert got == expected
    assert json.dumps(got) == json.dumps(expected)  # same order, floats printed alike
    assert type(got["int"]) is float  # 31.0, as json_format: a Value's number is a double
    assert got["unset"] is None


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused_as_json_format_refuses_them(number: float) -> None:
    struct = _struct({"x": [number]})
    with pytest.raises(ValueError):
        json_format.MessageToDict(struct)
    with pytest.raises(ValueError):
        values.plain_struct(struct)


def test_every_decided_flags_variables_convert_as_json_format_does() -> None:
    config = parse_datafile(build_flags(30))
    seen = 0
    for n in range(40):
        attributes = {"age": 20 + n, "country": ("US", "FR")[n % 2]}
        for decision in decide_all(config, f"user-{n}", attributes):
            struct = flag_decision(decision, False).variables
            assert values.plain_struct(struct) == json_format.MessageToDict(struct)
            seen += bool(struct.fields)
    assert seen > 0  # variables did go through


def test_kept_structs_convert_each_struct_once_and_never_mix_two_up() -> None:
    calls: list[Struct] = []

    def convert(struct: Struct) -> dict[str, Any]:
        calls.append(struct)
        return values.plain_struct(struct)

    kept = values.KeptStructs(convert, limit=2)
    first, same, other, third = (
        _struct(EDGES),
        _struct(EDGES),
        _struct({"a": 1}),
        _struct({"a": 2}),
    )
    assert kept(first) == json_format.MessageToDict(first)
    assert kept(same) is kept(first)  # equal bytes: converted once
    assert kept(other) == {"a": 1.0}
    assert len(calls) == 2
    assert kept(third) == {"a": 2.0}  # past the limit: all dropped, the new one kept
    assert kept(first) == json_format.MessageToDict(first)
    assert len(calls) == 4
