"""Bounded caches of values worked out once and reused call after call: JSON texts of a
datafile's shared decisions, Event API headers, converted Structs.

A cache at its limit is emptied rather than trimmed: the values a datafile shares come back
at once, and no bookkeeping is paid on hits, as an LRU's would be on every one.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def kept(cache: dict[K, V], key: K, value: V, limit: int) -> V:
    """Keeps `value` under `key` and returns it, emptying `cache` first when it holds `limit`
    entries."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


__all__ = ["kept"]
