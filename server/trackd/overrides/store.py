"""The override store interface: forced variations and forced decisions, held where
activations are so that every worker and replica honours an override set through any of them.

A forced variation is `(user_id, experiment_id) -> variation_id`, as the SDK's
`set_forced_variation`; a forced decision is `(user_id, flag_key, rule_key or None) ->
variation_key`, as `user_context.set_forced_decision`. Each lives `ttl` seconds
(`--override-ttl`) after it was last set. Each kind is bounded to `max_entries` (live ones):
setting a new one when full raises `ResourceExhausted` rather than evicting an override
someone relies on; replacing or removing one always works.

Deciding reads `for_user`: everything forced for one user in one call (one round trip to
Redis), so a Decide of 50 flags does not ask 50 times.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, NamedTuple, Protocol

from trackd.config import default_of
from trackd.errors import InvalidArgument

DEFAULT_TTL_SECONDS: float = default_of("override_ttl")
DEFAULT_MAX_ENTRIES = 100_000  # of each kind, as the per-process maps before

DecisionContext = tuple[str, str | None]  # (flag key, rule key or None for the whole flag)


class UserOverrides(NamedTuple):
    """Everything forced for one user; do not mutate."""

    variations: Mapping[str, str]  # experiment_id -> variation_id
    decisions: Mapping[DecisionContext, str]  # (flag key, rule key) -> variation key


# Read-only: shared by every call for a user with nothing forced (nearly every call).
NO_OVERRIDES = UserOverrides(MappingProxyType({}), MappingProxyType({}))


# The stores that keep overrides as text (Redis, LMDB) join two strings with the ASCII unit
# separator: a forced decision's field is its flag and rule, and Redis' count member is a user
# id and a field. The string before the separator is escaped so that it holds none, and so the
# join is exact whatever the keys hold; a key without ESC or US is written unchanged (so
# overrides written before the escape read the same).
SEPARATOR: Final = "\x1f"
_ESCAPE: Final = "\x1b"
# Only the two escapes `_escaped` writes: any other ESC (in a key written before the escape)
# is read as it is.
_ESCAPED: Final = re.compile("\x1b([es])")


def _escaped(text: str) -> str:
    if SEPARATOR not in text and _ESCAPE not in text:
        return text
    return text.replace(_ESCAPE, _ESCAPE + "e").replace(SEPARATOR, _ESCAPE + "s")


def _unescaped(text: str) -> str:
    if _ESCAPE not in text:
        return text
    return _ESCAPED.sub(lambda found: _ESCAPE if found[1] == "e" else SEPARATOR, text)


def joined(head: str, tail: str) -> str:
    """`head` US `tail`, split back exactly by `split_joined` whatever either holds."""
    return _escaped(head) + SEPARATOR + tail


def split_joined(text: str) -> tuple[str, str]:
    head, _, tail = text.partition(SEPARATOR)
    return _unescaped(head), tail


def decision_field(flag_key: str, rule_key: str | None) -> str:
    return "f" + flag_key if rule_key is None else "d" + joined(flag_key, rule_key)


def decision_context(field: str) -> DecisionContext:
    """The (flag_key, rule_key) a `decision_field` names."""
    if field[0] == "f":
        return (field[1:], None)
    return split_joined(field[1:])


def check_variation(experiment_id: str, variation_id: str) -> None:
    """The ids of a forced variation must be non-empty (the user id may be anything)."""
    if not experiment_id:
        raise InvalidArgument("experiment id must not be empty")
    if not variation_id:
        raise InvalidArgument("variation id must not be empty")


def check_decision(flag_key: str, variation_key: str) -> None:
    if not flag_key:
        raise InvalidArgument("flag key must not be empty")
    if not variation_key:
        raise InvalidArgument("variation key must not be empty")


class OverrideStore(Protocol):
    """Forced variations and forced decisions, each expiring `ttl` after it was set."""

    @property
    def remote(self) -> bool:
        """As `ActivationStore.remote`: True when every call is a network round trip."""
        ...

    async def set_variation(self, user_id: str, experiment_id: str, variation_id: str) -> None:
        """Force the user into the variation; raises `ResourceExhausted` when full."""
        ...

    async def get_variation(self, user_id: str, experiment_id: str) -> str | None:
        """The live forced variation id, or None."""
        ...

    async def remove_variation(self, user_id: str, experiment_id: str) -> bool:
        """Remove the forced variation; True if a live one was there."""
        ...

    async def set_decision(
        self, user_id: str, flag_key: str, rule_key: str | None, variation_key: str
    ) -> None:
        """Force the variation key for the flag (rule_key None) or one of its rules; raises
        `ResourceExhausted` when full."""
        ...

    async def get_decision(self, user_id: str, flag_key: str, rule_key: str | None) -> str | None:
        """The live forced variation key for exactly this (flag, rule), or None."""
        ...

    async def remove_decision(self, user_id: str, flag_key: str, rule_key: str | None) -> bool:
        """Remove one forced decision; True if a live one was there."""
        ...

    async def remove_all_decisions(self, user_id: str) -> int:
        """Remove every forced decision of the user; how many live ones there were."""
        ...

    async def for_user(self, user_id: str) -> UserOverrides:
        """Everything live forced for the user, in one call."""
        ...

    async def close(self) -> None:
        """Release resources; the store is not used afterwards."""
        ...
