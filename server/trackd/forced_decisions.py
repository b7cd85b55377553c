"""Forced decisions set at run time, as the SDK's `user_context.set_forced_decision`.

Per user, keyed by (flag key, rule key or None for the whole flag), holding a variation key;
held in this process's memory with no expiry, like forced variations (trackd.forced). Keys,
not ids, as the SDK keeps them: a forced decision naming a variation the flag does not have is
kept and ignored when deciding (trackd.decision.flags), exactly as the SDK ignores it.
"""

from __future__ import annotations

from collections.abc import Mapping

from trackd.errors import InvalidArgument, ResourceExhausted

DEFAULT_MAX_FORCED_DECISIONS = 100_000

DecisionContext = tuple[str, str | None]  # (flag key, rule key or None)
EMPTY: Mapping[DecisionContext, str] = {}


class ForcedDecisions:
    """`user_id -> (flag_key, rule_key) -> variation_key`, at most `max_entries` in all.

    Setting a new entry when full raises `ResourceExhausted` rather than evicting an override
    someone relies on; replacing or removing one always works.
    """

    def __init__(self, *, max_entries: int = DEFAULT_MAX_FORCED_DECISIONS) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries!r}")
        self._max_entries = max_entries
        self._by_user: dict[str, dict[DecisionContext, str]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def set(self, user_id: str, flag_key: str, rule_key: str | None, variation_key: str) -> None:
        """Force `variation_key` for the flag (rule_key None) or for one of its rules."""
        if not flag_key:
            raise InvalidArgument("flag key must not be empty")
        if not variation_key:
            raise InvalidArgument("variation key must not be empty")
        context = (flag_key, rule_key)
        contexts = self._by_user.get(user_id)
        if contexts is not None and context in contexts:
            contexts[context] = variation_key
            return
        if self._size >= self._max_entries:
            raise ResourceExhausted(
                f"forced decisions are full ({self._max_entries}); remove some first"
            )
        if contexts is None:
            contexts = self._by_user[user_id] = {}
        contexts[context] = variation_key
        self._size += 1

    def get(self, user_id: str, flag_key: str, rule_key: str | None) -> str | None:
        """The forced variation key for exactly this (flag, rule), or None."""
        return self.for_user(user_id).get((flag_key, rule_key))

    def for_user(self, user_id: str) -> Mapping[DecisionContext, str]:
        """Everything forced for the user, what a flag decision reads; do not mutate."""
        return self._by_user.get(user_id, EMPTY)

    def remove(self, user_id: str, flag_key: str, rule_key: str | None) -> bool:
        """Remove one forced decision; True if there was one."""
        contexts = self._by_user.get(user_id)
        if contexts is None or contexts.pop((flag_key, rule_key), None) is None:
            return False
        self._size -= 1
        if not contexts:
            del self._by_user[user_id]
        return True

    def remove_all(self, user_id: str) -> int:
        """Remove every forced decision of the user; return how many there were."""
        contexts = self._by_user.pop(user_id, None)
        removed = 0 if contexts is None else len(contexts)
        self._size -= removed
        return removed
