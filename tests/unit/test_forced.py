"""ForcedVariations: the SDK-style run-time overrides."""

from __future__ import annotations

import pytest

from trackd.errors import InvalidArgument, ResourceExhausted
from trackd.forced import ForcedVariations


def test_set_then_get_returns_the_forced_variation() -> None:
    forced = ForcedVariations()
    forced.set("u1", "e1", "v1")
    assert forced.get("u1", "e1") == "v1"
    assert forced.get("u2", "e1") is None
    assert forced.get("u1", "e2") is None
    assert len(forced) == 1


def test_set_replaces_the_forced_variation() -> None:
    forced = ForcedVariations()
    forced.set("u1", "e1", "v1")
    forced.set("u1", "e1", "v2")
    assert forced.get("u1", "e1") == "v2"
    assert len(forced) == 1


def test_setting_none_clears_as_the_sdk_does() -> None:
    forced = ForcedVariations()
    forced.set("u1", "e1", "v1")
    forced.set("u1", "e1", None)
    assert forced.get("u1", "e1") is None
    assert len(forced) == 0
    forced.set("u1", "e1", None)  # clearing nothing is fine


def test_clear_reports_whether_there_was_a_forced_variation() -> None:
    forced = ForcedVariations()
    forced.set("u1", "e1", "v1")
    forced.set("u2", "e1", "v1")
    assert forced.clear("u1", "e1") is True
    assert forced.clear("u1", "e1") is False
    assert forced.clear("u1", "e9") is False
    assert forced.get("u2", "e1") == "v1"
    assert len(forced) == 1


def test_an_empty_user_id_is_accepted_as_the_sdk_does() -> None:
    forced = ForcedVariations()
    forced.set("", "e1", "v1")
    assert forced.get("", "e1") == "v1"


@pytest.mark.parametrize(("experiment_id", "variation_id"), [("", "v1"), ("e1", "")])
def test_empty_ids_are_rejected(experiment_id: str, variation_id: str) -> None:
    forced = ForcedVariations()
    with pytest.raises(InvalidArgument):
        forced.set("u1", experiment_id, variation_id)
    assert len(forced) == 0


def test_a_full_store_rejects_new_pairs_but_allows_replacing_and_clearing() -> None:
    forced = ForcedVariations(max_entries=2)
    forced.set("u1", "e1", "v1")
    forced.set("u2", "e1", "v1")
    with pytest.raises(ResourceExhausted, match="full"):
        forced.set("u3", "e1", "v1")
    forced.set("u1", "e1", "v2")
    assert forced.clear("u2", "e1")
    forced.set("u3", "e1", "v1")
    assert forced.get("u3", "e1") == "v1"


def test_invalid_bound_is_rejected() -> None:
    with pytest.raises(ValueError):
        ForcedVariations(max_entries=0)


def test_retain_drops_vanished_experiments_and_variations() -> None:
    forced = ForcedVariations()
    forced.set("u1", "e1", "v1")
    forced.set("u2", "e1", "v2")
    forced.set("u3", "e1", "v2")
    forced.set("u1", "gone", "v9")
    asked: list[tuple[str, str]] = []

    def keep(experiment_id: str, variation_id: str) -> bool:
        asked.append((experiment_id, variation_id))
        return experiment_id == "e1" and variation_id == "v1"

    assert forced.retain(keep) == 3
    assert forced.get("u1", "e1") == "v1"
    assert forced.get("u2", "e1") is None
    assert forced.get("u1", "gone") is None
    assert len(forced) == 1
    assert sorted(asked) == [("e1", "v1"), ("e1", "v2"), ("gone", "v9")]  # once per pair
