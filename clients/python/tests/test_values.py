"""Plain dict values -> google.protobuf.Value, as the wrapper sends attributes and tags."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.struct_pb2 import NULL_VALUE, Struct, Value

from trackd_client import NotFoundError, TrackdError, to_value, to_value_map
from trackd_client._values import from_struct, from_value
from trackd_client.errors import code_from_number, error_for

VECTORS = json.loads((Path(__file__).parents[2] / "testdata" / "values.json").read_text())
NATIVE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "2^53+1": 2**53 + 1}
ERRORS = {"unsupported": TypeError, "inexact": ValueError}


def expected_value(expect: dict[str, Any]) -> Value:
    if expect["kind"] == "null_value":
        return Value(null_value=NULL_VALUE)
    if expect["kind"] == "number_value":
        return Value(number_value=float(expect["value"]))  # float("NaN"), float("Infinity")
    return Value(**{expect["kind"]: expect["value"]})


def vector_cases() -> list[Any]:
    cases = [pytest.param(v["input"], v, id=v["name"]) for v in VECTORS["values"]]
    cases += [pytest.param(NATIVE[v["name"]], v, id=v["name"]) for v in VECTORS["native"]]
    return cases


@pytest.mark.parametrize(("plain", "vector"), vector_cases())
@pytest.mark.parametrize("what", ["attributes", "tags"])
def test_the_shared_value_vectors(plain: object, vector: dict[str, Any], what: str) -> None:
    """clients/testdata/values.json: the conversion every client makes, attributes and tags."""
    if "error" in vector:
        with pytest.raises(ERRORS[vector["error"]]):
            to_value_map({"k": plain}, what)  # type: ignore[dict-item]
        return
    got = to_value_map({"k": plain}, what)["k"]  # type: ignore[dict-item]
    want = expected_value(vector["expect"])
    assert got.WhichOneof("kind") == want.WhichOneof("kind")
    if want.WhichOneof("kind") == "number_value" and math.isnan(want.number_value):
        assert math.isnan(got.number_value)
    else:
        assert got == want


def test_the_vectors_name_one_non_finite_rule_for_all_clients() -> None:
    assert VECTORS["non_finite"]["attributes"] == VECTORS["non_finite"]["tags"] == "pass_through"
    assert set(NATIVE) == {v["name"] for v in VECTORS["native"]}


@pytest.mark.parametrize(
    ("plain", "expected"),
    [
        ("iPhone", Value(string_value="iPhone")),
        ("", Value(string_value="")),
        (31, Value(number_value=31.0)),
        (-7, Value(number_value=-7.0)),
        (2**53, Value(number_value=float(2**53))),
        (0.25, Value(number_value=0.25)),
        (True, Value(bool_value=True)),
        (False, Value(bool_value=False)),
        (None, Value(null_value=NULL_VALUE)),
    ],
)
def test_scalars_become_the_matching_value_kind(plain: object, expected: Value) -> None:
    assert to_value(plain) == expected  # type: ignore[arg-type]


def test_bool_is_not_sent_as_a_number() -> None:
    """bool is an int subclass in Python; trackd must still see a boolean."""
    assert to_value(True).WhichOneof("kind") == "bool_value"


def test_non_finite_floats_pass_through_for_the_daemon_to_judge() -> None:
    assert math.isnan(to_value(math.nan).number_value)
    assert to_value(math.inf).number_value == math.inf


@pytest.mark.parametrize("bad", [[1, 2], {"a": 1}, (1,), {1}, b"bytes", object()])
def test_lists_structs_and_other_types_are_refused_with_type_error(bad: object) -> None:
    with pytest.raises(TypeError):
        to_value(bad)  # type: ignore[arg-type]


def test_integers_beyond_double_precision_are_refused() -> None:
    with pytest.raises(ValueError, match="not exactly representable"):
        to_value(2**53 + 1)


def test_map_conversion_names_the_offending_key() -> None:
    with pytest.raises(TypeError, match=r"tags\['items'\]"):
        to_value_map({"revenue": 4200, "items": ["a"]}, "tags")


def test_map_keys_must_be_strings() -> None:
    with pytest.raises(TypeError, match="keys must be str"):
        to_value_map({1: "x"})  # type: ignore[dict-item]


def test_none_map_is_empty_and_a_non_mapping_is_refused() -> None:
    assert to_value_map(None) == {}
    with pytest.raises(TypeError, match="must be a mapping"):
        to_value_map([("device", "iPhone")])  # type: ignore[arg-type]


def test_the_doc_snippet_attributes_convert() -> None:
    converted = to_value_map({"device": "iPhone", "ad_source": "my_campaign"})
    assert converted == {
        "device": Value(string_value="iPhone"),
        "ad_source": Value(string_value="my_campaign"),
    }


@pytest.mark.parametrize("plain", ["x", 3, 2.5, True, None])
def test_from_value_inverts_to_value(plain: object) -> None:
    back = from_value(to_value(plain))  # type: ignore[arg-type]
    assert back == plain and type(back) is type(plain)


def test_status_codes_map_to_the_error_hierarchy() -> None:
    error = error_for(code_from_number(5), "unknown event 'x'")
    assert isinstance(error, NotFoundError) and isinstance(error, TrackdError)
    assert error.code is grpc.StatusCode.NOT_FOUND
    other = error_for(grpc.StatusCode.ABORTED, "why")
    assert type(other) is TrackdError and other.code is grpc.StatusCode.ABORTED


def test_from_struct_reads_json_variables_as_lists_and_dicts() -> None:
    struct = Struct()
    struct.update({"n": 2, "f": 1.5, "obj": {"list": [1, "a", True, None], "inner": {}}})
    assert from_struct(struct) == {
        "n": 2,
        "f": 1.5,
        "obj": {"list": [1, "a", True, None], "inner": {}},
    }
