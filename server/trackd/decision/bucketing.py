"""Optimizely bucketing: MurmurHash3 of bucketing id + parent id, scaled to [0, 10000)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping

import mmh3

HASH_SEED = 1
MAX_TRAFFIC_VALUE = 10000
BUCKETING_ID_ATTRIBUTE = "$opt_bucketing_id"


def bucket_value(bucketing_key: str) -> int:
    """The bucket in [0, 10000) for `bucketing_key` (bucketing id followed by parent id).

    The SDK computes floor(hash / 2**32 * 10000) in floats; every step of that is exact in a
    double (the product is a multiple of 2**-28 below 2**14), so integer arithmetic agrees.
    """
    return mmh3.hash(bucketing_key, HASH_SEED, signed=False) * MAX_TRAFFIC_VALUE >> 32


def find_entity(ends: tuple[int, ...], entity_ids: tuple[str, ...], bucket: int) -> str | None:
    """The entity of the first range ending above `bucket` (tables from `first_match_table`)."""
    index = bisect_right(ends, bucket)
    return entity_ids[index] if index < len(ends) else None


def bucketing_id(user_id: str, attributes: Mapping[str, object]) -> str:
    """`$opt_bucketing_id` when it is a str (other kinds are ignored, as the SDK), else user id."""
    value = attributes.get(BUCKETING_ID_ATTRIBUTE)
    return value if isinstance(value, str) else user_id
