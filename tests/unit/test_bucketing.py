"""Bucketing as every Optimizely SDK computes it (MurmurHash3 of bucketing id + parent id,
scaled to [0, 10000)), checked through decide(), the code that buckets."""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from optimizely.bucketer import Bucketer

from trackd.datafile import ProjectConfig, parse_datafile
from trackd.datafile.model import hash_end
from trackd.decision import Reason, decide

PARENT = "1886780721"  # the parent id of Optimizely's published vectors

# Buckets of `user + PARENT`: the published vectors' (ppid1 to ppid3), and the SDK's own
# bucketer for the others, which the tests below use as known points.
BUCKETS = {"ppid1": 5254, "ppid2": 4299, "ppid3": 5439, "ppid4": 8402, "ppid5": 5316}


def variation(id_: str) -> dict[str, Any]:
    return {"id": id_, "key": id_, "featureEnabled": False, "variables": []}


def experiment(id_: str, ranges: list[tuple[int, str]], key: str = "") -> dict[str, Any]:
    """A running experiment whose variations are the entity ids of `ranges` (their ids are
    also their keys; "" is left out, as it names no variation)."""
    ids = dict.fromkeys(entity for _, entity in ranges if entity)
    return {
        "id": id_,
        "key": key or f"e{id_}",
        "layerId": f"layer{id_}",
        "status": "Running",
        "audienceIds": [],
        "forcedVariations": {},
        "variations": [variation(v) for v in ids],
        "trafficAllocation": [{"entityId": e, "endOfRange": end} for end, e in ranges],
    }


def datafile(
    experiments: list[dict[str, Any]], groups: list[dict[str, Any]] | None = None
) -> ProjectConfig:
    return parse_datafile(
        json.dumps(
            {
                "version": "4",
                "accountId": "1",
                "projectId": "2",
                "revision": "3",
                "experiments": experiments,
                "groups": groups or [],
                "events": [],
                "audiences": [],
                "attributes": [],
            }
        )
    )


def around(bucket: int) -> list[tuple[int, str]]:
    """Ranges that put exactly `bucket` in variation "exact"."""
    return [(bucket, "below"), (bucket + 1, "exact"), (10000, "above")]


def decided(config: ProjectConfig, experiment_id: str, user: str, **attributes: Any) -> str | None:
    decision = decide(config, config.experiments_by_id[experiment_id], user, attributes)
    return decision.variation.key if decision.variation else None


@pytest.mark.parametrize(
    ("user", "parent_id", "bucket"),
    [
        ("ppid1", "1886780721", 5254),
        ("ppid2", "1886780721", 4299),
        ("ppid3", "1886780721", 5439),
        ("ppid2", "1886780722", 2434),
    ],
)
def test_published_bucketing_vectors_decide_the_variation(
    user: str, parent_id: str, bucket: int
) -> None:
    """The vectors from Optimizely's bucketing docs: the key is bucketing id then parent id.
    A range one bucket wide holds the vector's bucket, so one bucket off lands elsewhere."""
    config = datafile([experiment(parent_id, around(bucket))])
    assert decided(config, parent_id, user) == "exact"


@pytest.mark.parametrize(("user", "bucket"), [("ppid1", 5254), ("ppid3", 5439)])
def test_published_bucketing_vectors_pick_the_group_slot(user: str, bucket: int) -> None:
    """A mutually exclusive group hashes the user with the group id as the parent."""
    inside = experiment("100", [(10000, "v")])
    other = experiment("200", [(10000, "w")])
    group = {
        "id": PARENT,
        "policy": "random",
        "trafficAllocation": [
            {"entityId": "200", "endOfRange": bucket},
            {"entityId": "100", "endOfRange": bucket + 1},
            {"entityId": "200", "endOfRange": 10000},
        ],
        "experiments": [inside, other],
    }
    config = datafile([], [group])
    assert decided(config, "100", user) == "v"
    assert decide(config, config.experiments_by_id["200"], user, {}).reason is (
        Reason.NOT_IN_GROUP_SLOT
    )


def test_bucketing_id_attribute_replaces_the_user_id_only_when_it_is_a_string() -> None:
    config = datafile([experiment(PARENT, around(BUCKETS["ppid1"]))])
    assert decided(config, PARENT, "someone", **{"$opt_bucketing_id": "ppid1"}) == "exact"
    for not_a_string in (7, 7.5, True, None):  # ignored, as the SDK does: the user id hashes
        assert decided(config, PARENT, "ppid1", **{"$opt_bucketing_id": not_a_string}) == "exact"
    # An empty string is still a string: it hashes, not the user id.
    empty = datafile([experiment(PARENT, around(Bucketer()._generate_bucket_value(PARENT)))])
    assert decided(empty, PARENT, "ppid1", **{"$opt_bucketing_id": ""}) == "exact"


def test_non_ascii_bucketing_ids_hash_as_utf8() -> None:
    """pymmh3 in the SDK encodes str with UTF-8; the SDK's bucketer is the oracle here."""
    user = "ユーザー42"
    bucket = Bucketer()._generate_bucket_value(user + PARENT)
    config = datafile([experiment(PARENT, around(bucket))])
    assert decided(config, PARENT, user) == "exact"


def test_first_range_ending_above_the_bucket_wins() -> None:
    # ppid2 is in bucket 4299, ppid1 in 5254: the range ending at 5254 holds 4299 only.
    config = datafile([experiment(PARENT, [(5254, "a"), (10000, "b")])])
    assert decided(config, PARENT, "ppid2") == "a"
    assert decided(config, PARENT, "ppid1") == "b"


def test_bucket_past_the_last_range_lands_nowhere() -> None:
    config = datafile([experiment(PARENT, [(5254, "a")])])
    assert decided(config, PARENT, "ppid2") == "a"
    decision = decide(config, config.experiments_by_id[PARENT], "ppid1", {})
    assert (decision.variation, decision.reason) == (None, Reason.OUTSIDE_TRAFFIC)


def test_out_of_order_ranges_behave_as_a_first_match_scan() -> None:
    """The SDK scans the ranges in order: a range ending below an earlier one never wins."""
    config = datafile([experiment(PARENT, [(5300, "late"), (5000, "shadowed"), (9000, "c")])])
    assert decided(config, PARENT, "ppid2") == "late"  # 4299: "shadowed" would also hold it
    assert decided(config, PARENT, "ppid5") == "c"  # 5316
    assert decided(config, PARENT, "ppid4") == "c"  # 8402


def test_empty_entity_id_is_kept_so_it_lands_nowhere() -> None:
    config = datafile([experiment(PARENT, [(5000, ""), (10000, "b")])])
    decision = decide(config, config.experiments_by_id[PARENT], "ppid2", {})
    assert (decision.variation, decision.reason) == (None, Reason.OUTSIDE_TRAFFIC)
    assert decided(config, PARENT, "ppid1") == "b"


def _bucket_of(hashed: int) -> int:
    """The SDK's bucket of a 32-bit hash: floor(hash / 2**32 * 10000), in floats as it does."""
    return math.floor(hashed / 2**32 * 10000)


@given(
    ends=st.lists(st.integers(-20000, 30000), max_size=6).map(sorted),
    hashed=st.integers(0, 2**32 - 1),
)
def test_a_bisect_of_the_hash_over_hash_ends_finds_the_range_of_its_bucket(
    ends: list[int], hashed: int
) -> None:
    """decide() bisects the raw hash over ends converted at load (hash_end): the same range as
    a bisect of the bucket over the ends, for any end a datafile may write."""
    hash_ends = [hash_end(end) for end in ends]
    assert bisect_right(hash_ends, hashed) == bisect_right(ends, _bucket_of(hashed))


@pytest.mark.parametrize("end", [0, 1, 2, 2500, 4999, 5000, 9999, 10000])
def test_hash_end_is_the_first_hash_of_the_bucket_at_the_end(end: int) -> None:
    first = hash_end(end)
    assert _bucket_of(first) == end
    assert first == 0 or _bucket_of(first - 1) == end - 1


@given(
    ends=st.lists(st.integers(-20000, 30000), max_size=4).map(sorted),
    hashed=st.integers(0, 2**32 - 1),
)
def test_every_hash_range_is_where_any_hash_lands_when_one_range_takes_all(
    ends: list[int], hashed: int
) -> None:
    """Traffic whose ranges send every hash to one range is decided without hashing."""
    config = datafile([experiment("7", [(end, "v") for end in ends])])
    parsed = config.experiments_by_id["7"]
    lands = bisect_right(parsed.hash_ends, hashed)
    if parsed.every_hash_range is not None:
        assert parsed.every_hash_range == lands
    elif parsed.hash_ends:
        assert bisect_right(parsed.hash_ends, 0) != bisect_right(parsed.hash_ends, 2**32 - 1)


@pytest.mark.parametrize(
    ("ends", "every_hash_range"),
    [([], 0), ([10000], 0), ([0], 1), ([0, 10000], 1), ([-5, 0], 2), ([5000], None)],
)
def test_full_or_empty_traffic_needs_no_hash(ends: list[int], every_hash_range: int | None) -> None:
    config = datafile([experiment(PARENT, [(end, "v") for end in ends])])
    assert config.experiments_by_id[PARENT].every_hash_range == every_hash_range
    for user, bucket in BUCKETS.items():
        # What decide() gives, hash skipped or not, is what the SDK's bucket says.
        expected = "v" if any(bucket < end for end in ends) else None
        assert decided(config, PARENT, user) == expected
