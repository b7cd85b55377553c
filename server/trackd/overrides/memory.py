"""Overrides in this process's memory: one process, no workers (`--activation-store memory`).

Two tables of the same shape, `user_id -> key -> (value, expiry)`: a user with nothing forced
costs `for_user` two dict lookups, what Activate and Decide pay for nearly every user.
Expired entries are dropped when their user is next read or written, and all at once only
when a table is full (setting overrides is a rare, human act; the scan is paid then).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from trackd.activation.store import check_limits
from trackd.errors import ResourceExhausted
from trackd.overrides.store import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_TTL_SECONDS,
    NO_OVERRIDES,
    DecisionContext,
    UserOverrides,
    check_decision,
    check_variation,
)

K = TypeVar("K", bound=Hashable)


class _Table(Generic[K]):
    """`user_id -> key -> (value, expiry)`, at most `max_entries` entries held."""

    def __init__(self, what: str, max_entries: int) -> None:
        self._what = what  # named in the "full" error
        self._max_entries = max_entries
        self._by_user: dict[str, dict[K, tuple[str, float]]] = {}
        self._size = 0

    def set(self, user_id: str, key: K, value: str, expiry: float, now: float) -> None:
        entries = self._live(user_id, now)
        if entries is None or key not in entries:
            if self._size >= self._max_entries:
                self._drop_expired(now)
            if self._size >= self._max_entries:
                raise ResourceExhausted(
                    f"{self._what} are full ({self._max_entries}); remove some first"
                )
            self._size += 1
            if entries is None:
                entries = self._by_user[user_id] = {}
        entries[key] = (value, expiry)

    def __contains__(self, user_id: str) -> bool:
        """Whether the user has entries, expired ones perhaps: Activate's and Decide's check
        for the many users with none, before any clock read or copy."""
        return user_id in self._by_user

    def get(self, user_id: str, key: K, now: float) -> str | None:
        held = self._by_user.get(user_id)
        entry = None if held is None else held.get(key)
        return entry[0] if entry is not None and entry[1] > now else None

    def live(self, user_id: str, now: float) -> dict[K, str]:
        entries = self._live(user_id, now)
        return {} if entries is None else {key: value for key, (value, _) in entries.items()}

    def remove(self, user_id: str, key: K, now: float) -> bool:
        entries = self._live(user_id, now)
        if entries is None or entries.pop(key, None) is None:
            return False
        self._size -= 1
        if not entries:
            del self._by_user[user_id]
        return True

    def remove_user(self, user_id: str, now: float) -> int:
        entries = self._live(user_id, now)
        if entries is None:
            return 0
        del self._by_user[user_id]
        self._size -= len(entries)
        return len(entries)

    def _live(self, user_id: str, now: float) -> dict[K, tuple[str, float]] | None:
        """The user's entries with the expired ones dropped; None if none is left."""
        entries = self._by_user.get(user_id)
        if entries is None:
            return None
        expired = [key for key, (_, expiry) in entries.items() if expiry <= now]
        for key in expired:
            del entries[key]
        self._size -= len(expired)
        if entries:
            return entries
        del self._by_user[user_id]
        return None

    def _drop_expired(self, now: float) -> None:
        for user_id in list(self._by_user):
            self._live(user_id, now)


class MemoryOverrideStore:
    """`OverrideStore` in this process's memory. `clock` returns monotonic seconds."""

    remote = False

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_limits(ttl, max_entries)
        self._ttl = ttl
        self._clock = clock
        self._variations: _Table[str] = _Table("forced variations", max_entries)
        self._decisions: _Table[DecisionContext] = _Table("forced decisions", max_entries)

    @property
    def ttl(self) -> float:
        return self._ttl

    async def set_variation(self, user_id: str, experiment_id: str, variation_id: str) -> None:
        check_variation(experiment_id, variation_id)
        now = self._clock()
        self._variations.set(user_id, experiment_id, variation_id, now + self._ttl, now)

    async def get_variation(self, user_id: str, experiment_id: str) -> str | None:
        if user_id not in self._variations:
            return None
        return self._variations.get(user_id, experiment_id, self._clock())

    async def remove_variation(self, user_id: str, experiment_id: str) -> bool:
        return self._variations.remove(user_id, experiment_id, self._clock())

    async def set_decision(
        self, user_id: str, flag_key: str, rule_key: str | None, variation_key: str
    ) -> None:
        check_decision(flag_key, variation_key)
        now = self._clock()
        context = (flag_key, rule_key)
        self._decisions.set(user_id, context, variation_key, now + self._ttl, now)

    async def get_decision(self, user_id: str, flag_key: str, rule_key: str | None) -> str | None:
        return self._decisions.get(user_id, (flag_key, rule_key), self._clock())

    async def remove_decision(self, user_id: str, flag_key: str, rule_key: str | None) -> bool:
        return self._decisions.remove(user_id, (flag_key, rule_key), self._clock())

    async def remove_all_decisions(self, user_id: str) -> int:
        return self._decisions.remove_user(user_id, self._clock())

    async def for_user(self, user_id: str) -> UserOverrides:
        if user_id not in self._variations and user_id not in self._decisions:
            return NO_OVERRIDES
        now = self._clock()
        variations = self._variations.live(user_id, now)
        decisions = self._decisions.live(user_id, now)
        if not variations and not decisions:
            return NO_OVERRIDES
        return UserOverrides(variations, decisions)

    async def close(self) -> None:
        return None
