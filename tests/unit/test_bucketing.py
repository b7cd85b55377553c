"""Bucketing: MurmurHash3 of bucketing id + parent id, as every Optimizely SDK computes it."""

from __future__ import annotations

import pytest

from trackd.datafile.model import TrafficRange, first_match_table
from trackd.decision.bucketing import bucket_value, bucketing_id, find_entity


@pytest.mark.parametrize(
    ("bucketing_key", "bucket"),
    [
        ("ppid11886780721", 5254),
        ("ppid21886780721", 4299),
        ("ppid31886780721", 5439),
        ("ppid21886780722", 2434),
    ],
)
def test_published_bucketing_vectors(bucketing_key: str, bucket: int) -> None:
    """The vectors from Optimizely's bucketing docs: key is bucketing id then parent id."""
    assert bucket_value(bucketing_key) == bucket


def test_bucket_values_stay_within_zero_to_ten_thousand() -> None:
    buckets = [bucket_value(f"user{n}123") for n in range(5000)]
    assert min(buckets) >= 0
    assert max(buckets) < 10000


def test_non_ascii_bucketing_ids_hash_as_utf8() -> None:
    # pymmh3 in the SDK encodes str with UTF-8 too; the parity suite checks this end to end.
    assert 0 <= bucket_value("ユーザー42") < 10000


def ranges(*pairs: tuple[int, str]) -> tuple[TrafficRange, ...]:
    return tuple(TrafficRange(end, entity) for end, entity in pairs)


def test_first_range_ending_above_the_bucket_wins() -> None:
    ends, ids = first_match_table(ranges((5000, "a"), (10000, "b")))
    assert find_entity(ends, ids, 0) == "a"
    assert find_entity(ends, ids, 4999) == "a"
    assert find_entity(ends, ids, 5000) == "b"
    assert find_entity(ends, ids, 9999) == "b"


def test_bucket_past_the_last_range_lands_nowhere() -> None:
    ends, ids = first_match_table(ranges((3000, "a")))
    assert find_entity(ends, ids, 3000) is None
    assert find_entity((), (), 0) is None


def test_out_of_order_ranges_behave_as_a_first_match_scan() -> None:
    ends, ids = first_match_table(ranges((8000, "late"), (2000, "shadowed"), (9000, "c")))
    assert find_entity(ends, ids, 100) == "late"
    assert find_entity(ends, ids, 8500) == "c"
    assert "shadowed" not in ids


def test_empty_entity_id_is_kept_so_it_lands_nowhere() -> None:
    ends, ids = first_match_table(ranges((5000, ""), (10000, "b")))
    assert find_entity(ends, ids, 10) == ""


def test_bucketing_id_attribute_is_used_only_when_it_is_a_string() -> None:
    assert bucketing_id("user", {"$opt_bucketing_id": "household-7"}) == "household-7"
    assert bucketing_id("user", {"$opt_bucketing_id": ""}) == ""
    for not_a_string in (7, 7.5, True, None):
        assert bucketing_id("user", {"$opt_bucketing_id": not_a_string}) == "user"
    assert bucketing_id("user", {}) == "user"
