"""The activation store interface: which variation a user was activated in, and until when.

An activation is `(user_id, experiment_id) -> (variation_id, sticky)`, live until `ttl`
seconds after the last Activate that wrote or refreshed it. Activate reads it for stickiness,
Track reads it for attribution, GetVariation reads it without writing. `sticky` is False for a
forced or whitelisted decision: the Optimizely SDK never saves those to its user profile, so
such an activation attributes conversions but does not keep the user in its variation once
the forcing ends. Every method is async and every call
that serves one RPC is one method, so a networked implementation (Redis) answers each in a
single round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from trackd.config import default_of

# The stores' defaults are the settings' (--activation-ttl, --activation-cache-size).
DEFAULT_TTL_SECONDS: float = default_of("activation_ttl")
DEFAULT_MAX_ENTRIES: int = default_of("activation_cache_size")

Keep = Callable[[str, str], bool]
"""`keep(experiment_id, variation_id)`: False drops every activation of that pair."""

Lookup = tuple[str, Collection[str] | None]
"""`(user_id, experiment_ids)`; `None` means every experiment."""


class Held(NamedTuple):
    """A live activation, as `get` returns it (a NamedTuple: cheap to build per call)."""

    variation_id: str
    sticky: bool  # False: forced or whitelisted, attributes conversions only


def check_limits(ttl: float, max_entries: int, sweep_budget: int = 1, purge_chunk: int = 1) -> None:
    """What a bounded store with a TTL (activations, and overrides) refuses to be built with;
    `sweep_budget` and `purge_chunk`: the work an activation store does per step."""
    if not ttl > 0:
        raise ValueError(f"ttl must be positive, got {ttl!r}")
    if max_entries < 1:
        raise ValueError(f"max_entries must be at least 1, got {max_entries!r}")
    if sweep_budget < 1 or purge_chunk < 1:
        raise ValueError("sweep_budget and purge_chunk must be at least 1")


def sticky_variation(held: Held | None) -> str | None:
    """The variation a user sticks to: that of a sticky live activation, else None."""
    return held.variation_id if held is not None and held.sticky else None


class Write(Protocol):
    """One activation for `put_many` to store: `put`'s arguments after the user id. Any
    object with these attributes will do (the tracker passes its own records as they are,
    not copies)."""

    @property
    def experiment_id(self) -> str: ...

    @property
    def variation_id(self) -> str: ...

    @property
    def sticky(self) -> bool: ...


class Sticky(NamedTuple):
    """What `refresh_or_put` left live: the variation (None if nothing) and whether a sticky
    activation was already live before the call (the user sticks: no second impression)."""

    variation_id: str | None
    sticky: bool


@dataclass(frozen=True, slots=True)
class ActivationStats:
    """Counters since the store was created.

    `entries` is the number of activations held (it may include expired ones not yet
    reclaimed). A lookup is a hit when it finds at least one live activation. `expiries`
    counts activations removed because their TTL passed, `evictions` live ones removed to stay
    within the size bound, `dropped` those removed by `retain` after a datafile change.
    `available` is False while a shared store cannot be reached.
    """

    entries: int
    hits: int
    misses: int
    evictions: int
    expiries: int
    dropped: int
    available: bool = True


class ActivationStore(Protocol):
    """Live activations keyed by (user_id, experiment_id), each expiring `ttl` seconds after
    the last write for that key. Reads never extend the expiry."""

    @property
    def remote(self) -> bool:
        """True when every call is a network round trip (Redis): the tracker then sends an
        RPC's independent reads together rather than one after the other. Fixed for the
        store's life."""
        ...

    async def get(self, user_id: str, experiment_id: str) -> Held | None:
        """The live activation of `user_id` in `experiment_id`, or None. Never refreshes."""
        ...

    async def put(
        self, user_id: str, experiment_id: str, variation_id: str, *, sticky: bool = True
    ) -> None:
        """Store the activation, replacing any held, expiring `ttl` from now."""
        ...

    async def put_many(self, user_id: str, entries: Sequence[Write]) -> None:
        """`put` of each entry in order, as one call (the feature tests of one Decide): the
        same activations, expiries, evictions and counters. No entries: no call to Redis."""
        ...

    async def refresh_or_put(
        self, user_id: str, experiment_id: str, variation_id: str | None
    ) -> Sticky:
        """Activate in one step: if a live sticky activation exists, refresh its expiry and
        return its variation with `sticky=True` (`variation_id` is ignored); otherwise store
        `variation_id` as sticky (when not None, replacing a live activation that is not
        sticky) and return it with `sticky=False`."""
        ...

    async def live_for_user(
        self, user_id: str, experiment_ids: Collection[str] | None = None
    ) -> dict[str, str]:
        """`{experiment_id: variation_id}` of the user's live activations, sticky or not,
        among `experiment_ids` (None: in every experiment). Never refreshes."""
        ...

    async def live_for_users(self, lookups: Sequence[Lookup]) -> list[dict[str, str]]:
        """`live_for_user` for each lookup, in order, as one call (a TrackStream batch)."""
        ...

    async def held_for_user(self, user_id: str, experiment_ids: Collection[str]) -> dict[str, Held]:
        """`{experiment_id: Held}` of the user's live activations among `experiment_ids`,
        with their stickiness: what `get` of each would answer, as one call (a Decide's
        feature tests; with Redis one round trip instead of `live_for_user` then a `get` per
        live one). Never refreshes."""
        ...

    async def retain(self, keep: Keep) -> int:
        """Drop every activation whose `keep(experiment_id, variation_id)` is False (the new
        datafile stopped the experiment or removed the variation); return how many. Dropped
        activations are invisible when this returns; it may yield to the event loop."""
        ...

    async def purge_expired(self) -> int:
        """Reclaim expired activations, yielding to the event loop between chunks; return
        how many. Meant for a periodic background task; never needed for correctness."""
        ...

    async def stats(self) -> ActivationStats:
        """The counters (see `ActivationStats`)."""
        ...

    async def close(self) -> None:
        """Release resources; the store is not used afterwards."""
        ...
