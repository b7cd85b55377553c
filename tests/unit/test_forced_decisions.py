"""ForcedDecisions: the SDK-style set_forced_decision store, per user and (flag, rule)."""

from __future__ import annotations

import pytest

from trackd.errors import InvalidArgument, ResourceExhausted
from trackd.forced_decisions import ForcedDecisions


def test_flag_and_flag_rule_entries_are_separate_as_the_sdk_keeps_them() -> None:
    forced = ForcedDecisions()
    forced.set("u1", "checkout", None, "on")
    forced.set("u1", "checkout", "checkout_test", "control")
    assert forced.get("u1", "checkout", None) == "on"
    assert forced.get("u1", "checkout", "checkout_test") == "control"
    assert forced.get("u1", "checkout", "other_rule") is None
    assert forced.get("u2", "checkout", None) is None
    assert dict(forced.for_user("u1")) == {
        ("checkout", None): "on",
        ("checkout", "checkout_test"): "control",
    }
    assert len(forced) == 2


def test_set_replaces_and_remove_reports_whether_there_was_one() -> None:
    forced = ForcedDecisions()
    forced.set("u1", "checkout", None, "on")
    forced.set("u1", "checkout", None, "off")
    assert forced.get("u1", "checkout", None) == "off"
    assert len(forced) == 1
    assert forced.remove("u1", "checkout", None) is True
    assert forced.remove("u1", "checkout", None) is False
    assert (len(forced), dict(forced.for_user("u1"))) == (0, {})


def test_remove_all_clears_one_user_only() -> None:
    forced = ForcedDecisions()
    forced.set("u1", "a", None, "on")
    forced.set("u1", "b", "rule", "off")
    forced.set("u2", "a", None, "on")
    assert forced.remove_all("u1") == 2
    assert forced.remove_all("u1") == 0
    assert dict(forced.for_user("u1")) == {}
    assert forced.get("u2", "a", None) == "on"
    assert len(forced) == 1


def test_a_full_store_refuses_new_entries_but_still_replaces() -> None:
    forced = ForcedDecisions(max_entries=1)
    forced.set("u1", "a", None, "on")
    with pytest.raises(ResourceExhausted):
        forced.set("u2", "a", None, "on")
    forced.set("u1", "a", None, "off")
    assert forced.get("u1", "a", None) == "off"


def test_empty_flag_or_variation_keys_are_refused() -> None:
    forced = ForcedDecisions()
    with pytest.raises(InvalidArgument):
        forced.set("u1", "", None, "on")
    with pytest.raises(InvalidArgument):
        forced.set("u1", "a", None, "")
