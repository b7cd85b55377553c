"""Optimizely bucketing: MurmurHash3 of bucketing id + parent id, scaled to [0, 10000).

`bucket()` computes it. The SDK computes floor(hash / 2**32 * 10000) in floats; every step of
that is exact in a double (the product is a multiple of 2**-28 below 2**14), so the integer
arithmetic agrees. The decision paths bisect the raw hash instead, over traffic ends converted
at load (trackd.datafile.model.hash_end), and call mmh3 inline: a call of `bucket()` costs
more than the math there.
"""

from __future__ import annotations

from collections.abc import Mapping

import mmh3

from trackd.datafile.model import MAX_TRAFFIC_VALUE

__all__ = ["BUCKETING_ID_ATTRIBUTE", "HASH_SEED", "MAX_TRAFFIC_VALUE", "bucket", "bucketing_id_of"]

HASH_SEED = 1
BUCKETING_ID_ATTRIBUTE = "$opt_bucketing_id"  # used instead of the user id when a str


def bucket(bucketing_id: str, parent_id: str) -> int:
    """The bucket in [0, 10000) of `bucketing_id` within the experiment or group `parent_id`."""
    return mmh3.hash(bucketing_id + parent_id, HASH_SEED, False) * MAX_TRAFFIC_VALUE >> 32


def bucketing_id_of(user_id: str, attributes: Mapping[str, object]) -> str:
    """What the user is hashed by: the `$opt_bucketing_id` attribute when it is a str."""
    bucketing_id = attributes.get(BUCKETING_ID_ATTRIBUTE)
    return bucketing_id if isinstance(bucketing_id, str) else user_id
