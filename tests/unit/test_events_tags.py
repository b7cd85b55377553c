"""Event tags read as optimizely-sdk reads them (its event_tag_utils is the oracle)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from optimizely.helpers import event_tag_utils

from trackd.errors import InvalidTag
from trackd.events.tags import NO_TAGS, TagValue, parse_tags


def test_whole_double_revenue_is_an_integer() -> None:
    parsed = parse_tags({"revenue": 4200.0})
    assert parsed.revenue == 4200
    assert type(parsed.revenue) is int
    assert parsed.tags == {"revenue": 4200}


def test_fractional_revenue_is_no_revenue_but_stays_a_tag() -> None:
    parsed = parse_tags({"revenue": 42.5, "value": 3})
    assert parsed.revenue is None
    assert parsed.value == 3.0
    assert parsed.tags == {"revenue": 42.5, "value": 3}


def test_revenue_beyond_2_pow_53_as_a_double_is_no_revenue() -> None:
    parsed = parse_tags({"revenue": 2.0**60})
    assert parsed.revenue is None  # a float, not Integral: the SDK drops it
    assert parsed.tags == {"revenue": 2.0**60}


def test_bool_revenue_and_value_count_for_nothing() -> None:
    parsed = parse_tags({"revenue": True, "value": False})
    assert (parsed.revenue, parsed.value) == (None, None)
    assert parsed.tags == {"revenue": True, "value": False}


def test_numeric_string_value_counts_as_the_sdk_does() -> None:
    assert parse_tags({"value": "3.5"}).value == 3.5
    assert parse_tags({"value": "1,234"}).value is None
    assert parse_tags({"value": "nan"}).value is None  # a string: passed through, not counted
    assert parse_tags({"revenue": "100"}).revenue is None


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("key", ["revenue", "value", "other"])
def test_nan_or_infinity_anywhere_is_invalid(key: str, bad: float) -> None:
    with pytest.raises(InvalidTag, match=key):
        parse_tags({key: bad})


def test_lists_are_invalid() -> None:
    with pytest.raises(InvalidTag):
        parse_tags({"x": [1, 2]})  # type: ignore[dict-item]


def test_no_tags_is_the_shared_empty_result() -> None:
    assert parse_tags(None) is NO_TAGS
    assert parse_tags({}) is NO_TAGS


def test_null_and_other_tags_pass_through() -> None:
    tags: dict[str, TagValue] = {"category": "shoes", "gift": True, "note": None, "qty": 2}
    assert parse_tags(tags).tags == tags


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["3.5", "-2", "1e3", " 7 ", "1_000", "inf", "abc"]),
)


@given(revenue=scalars, value=scalars)
def test_revenue_and_value_match_the_sdk(revenue: TagValue, value: TagValue) -> None:
    parsed = parse_tags({"revenue": revenue, "value": value})
    # The SDK sees what trackd's request parsing hands on: whole doubles as ints.
    assert parsed.revenue == event_tag_utils.get_revenue_value(dict(parsed.tags))  # type: ignore[arg-type]
    assert parsed.value == event_tag_utils.get_numeric_value(dict(parsed.tags))  # type: ignore[arg-type]
