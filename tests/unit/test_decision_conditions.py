"""Audience conditions: the SDK's three-valued rules, case by case."""

from __future__ import annotations

import json
from typing import Any

import pytest

from trackd.decision.audience import (
    ExperimentConditions,
    compile_audience_conditions,
    qualifies,
)
from trackd.decision.conditions import FALSE, TRUE, UNKNOWN, Condition, attribute_condition

LIMIT = 2**53


def leaf(match: str | None, value: Any, name: str = "a") -> Condition:
    return attribute_condition(name, value, "custom_attribute", match)


def test_exact_is_the_default_match_and_requires_the_same_kind() -> None:
    assert leaf(None, "iPhone").evaluate({"a": "iPhone"}) is True
    assert leaf(None, "iPhone").evaluate({"a": "iphone"}) is False
    assert leaf("exact", 1).evaluate({"a": 1.0}) is True  # int and float are one kind
    assert leaf("exact", 1).evaluate({"a": True}) is None  # bool is not a number
    assert leaf("exact", True).evaluate({"a": 1}) is None
    assert leaf("exact", "1").evaluate({"a": 1}) is None


def test_missing_or_null_attribute_is_unknown_except_for_exists() -> None:
    assert leaf("exact", "x").evaluate({}) is None
    assert leaf("gt", 1).evaluate({"a": None}) is None
    assert leaf("exists", None).evaluate({}) is False
    assert leaf("exists", None).evaluate({"a": None}) is False
    assert leaf("exists", None).evaluate({"a": False}) is True


def test_numbers_beyond_two_to_the_53_are_unknown() -> None:
    assert leaf("gt", 5).evaluate({"a": LIMIT}) is True
    assert leaf("gt", 5).evaluate({"a": LIMIT + 1}) is None
    assert leaf("lt", 5).evaluate({"a": -float(LIMIT) * 2}) is None
    assert leaf("gt", 5).evaluate({"a": float("nan")}) is None
    assert leaf("ge", LIMIT + 1) is UNKNOWN
    assert leaf("le", float("inf")) is UNKNOWN


def test_number_comparisons_refuse_bools_and_strings() -> None:
    assert leaf("ge", 1).evaluate({"a": True}) is None
    assert leaf("ge", 1).evaluate({"a": "2"}) is None
    assert leaf("ge", True) is UNKNOWN
    assert leaf("le", 2.5).evaluate({"a": 2}) is True


def test_substring_needs_strings_on_both_sides() -> None:
    assert leaf("substring", "Phone").evaluate({"a": "iPhone"}) is True
    assert leaf("substring", "Phone").evaluate({"a": 7}) is None
    assert leaf("substring", 7) is UNKNOWN


@pytest.mark.parametrize(
    ("match", "target", "user", "expected"),
    [
        ("semver_eq", "1.2", "1.2.9", True),  # a shorter target compares only its parts
        ("semver_eq", "1.2.3", "1.2", False),
        ("semver_gt", "1.2.3-beta", "1.2.3", True),  # release beats its pre-release
        ("semver_lt", "1.2.3", "1.2.3-beta", True),
        ("semver_ge", "1.10.0", "1.9.9", False),  # numeric, not lexical
        ("semver_le", "2.0.0", "2.0.0+build", True),
        ("semver_eq", "1.2.3", "1.2.3.4", None),  # more than three parts: invalid
        ("semver_eq", "1.2.3", "1.2.3 ", None),  # whitespace: invalid
        ("semver_eq", "1.2.3", 123, None),
    ],
)
def test_semver_matches_follow_the_sdk_rules(
    match: str, target: str, user: Any, expected: bool | None
) -> None:
    assert leaf(match, target).evaluate({"a": user}) is expected


def test_invalid_semver_target_is_unknown() -> None:
    assert leaf("semver_eq", "1..2") is UNKNOWN
    assert leaf("semver_eq", 1) is UNKNOWN


def test_unknown_match_and_condition_types_are_unknown() -> None:
    assert leaf("regex", ".*") is UNKNOWN
    assert attribute_condition("a", "x", "custom_dimension", "exact") is UNKNOWN
    assert attribute_condition("a", "x", "third_party_dimension", "exact") is not UNKNOWN


def test_qualified_segments_never_match_without_odp() -> None:
    assert leaf("qualified", "segment") is FALSE
    assert leaf("qualified", 3) is UNKNOWN


def compiled(structure: Any) -> Condition:
    return compile_audience_conditions(json.dumps(structure))


A_IS_X = {"name": "a", "type": "custom_attribute", "value": "x"}
B_IS_Y = {"name": "b", "type": "custom_attribute", "value": "y"}


def test_not_of_unknown_is_unknown() -> None:
    tree = compiled(["not", A_IS_X])
    assert tree.evaluate({"a": "x"}) is False
    assert tree.evaluate({"a": "z"}) is True
    assert tree.evaluate({}) is None


def test_list_without_operator_is_or() -> None:
    tree = compiled([A_IS_X, B_IS_Y])
    assert tree.evaluate({"b": "y"}) is True
    assert tree.evaluate({"a": "z"}) is None  # one False, one unknown
    assert tree.evaluate({"a": "z", "b": "z"}) is False


def test_and_is_false_on_any_false_and_unknown_on_any_unknown() -> None:
    tree = compiled(["and", A_IS_X, B_IS_Y])
    assert tree.evaluate({"a": "x", "b": "y"}) is True
    assert tree.evaluate({"a": "z"}) is False
    assert tree.evaluate({"a": "x"}) is None


def test_empty_operators_follow_the_sdk() -> None:
    assert compiled(["and"]) is TRUE
    assert compiled(["or"]) is FALSE
    assert compiled(["not"]) is UNKNOWN


def test_experiment_conditions_resolve_audience_ids() -> None:
    audiences = {"1": compiled([A_IS_X]), "2": compiled([B_IS_Y])}
    tree = ExperimentConditions(audiences).compile(["and", "1", ["not", "2"]])
    assert qualifies(tree, {"a": "x", "b": "z"})
    assert not qualifies(tree, {"a": "x"})  # unknown counts as not met
    assert not qualifies(ExperimentConditions(audiences).compile(["missing"]), {"a": "x"})


def test_no_audiences_means_everyone_qualifies() -> None:
    assert ExperimentConditions({}).compile([]) is None
    assert ExperimentConditions({}).compile(None) is None
    assert qualifies(None, {})


def test_equal_experiment_trees_of_one_datafile_are_one_object() -> None:
    """decide_all remembers a tree's answer for the call by the tree object, so rules whose
    audienceConditions are equal must share it; different trees must not."""
    audiences = {"1": compiled([A_IS_X]), "2": compiled([B_IS_Y])}
    conditions = ExperimentConditions(audiences)
    nested = conditions.compile(["and", "1", ["not", "2"]])
    assert conditions.compile(["and", "1", ["not", "2"]]) is nested
    either = conditions.compile(["or", "1", "2"])
    assert conditions.compile(["1", "2"]) is either  # no operator is "or"
    assert conditions.compile(["or", "2", "1"]) is not either
    assert conditions.compile(["and", "1", "2"]) is not either
    assert conditions.compile(["or", "1"]) is audiences["1"]
    # A new datafile's compiler shares nothing with this one.
    assert ExperimentConditions(audiences).compile(["or", "1", "2"]) is not either


@pytest.mark.parametrize(
    "structure",
    [
        ["and", "1", ["not", "2"]],
        ["or", "1", ["not", ["and", "2", "missing"]]],
        ["not", ["or", "1", "2"], "1"],
        ["and", ["or", "1", "2"], ["or", "1", "2"], ["not", "missing"]],
        ["or", [], "1"],
    ],
)
def test_a_shared_tree_answers_as_a_tree_built_alone(structure: list[Any]) -> None:
    audiences = {"1": compiled([A_IS_X]), "2": compiled(["and", B_IS_Y, A_IS_X])}
    conditions = ExperimentConditions(audiences)
    conditions.compile(["or", "1", "2"])  # built first, so the trees below reuse its nodes
    shared = conditions.compile(structure)
    alone = ExperimentConditions(audiences).compile(structure)
    assert shared is not None and alone is not None
    for attributes in ({}, {"a": "x"}, {"a": "z"}, {"a": "x", "b": "y"}, {"b": "y"}, {"a": 1}):
        assert shared.evaluate(attributes) is alone.evaluate(attributes), attributes
