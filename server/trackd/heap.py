"""The garbage collector tuned for a daemon whose long-lived objects dwarf its garbage.

Every TrackStream batch allocates and frees thousands of short-lived tuples and dicts. With
CPython's defaults (a young collection every 700 net allocations) that triggers collections
all the time, and each full one traverses everything alive: the datafile snapshot (cyclic:
experiments hold their own decisions), gRPC's objects and the activation cache. Freezing
what exists once started takes it out of every collection, and a higher young threshold
makes collections rare; what the batches allocate is freed by reference counting anyway.

A datafile reload leaves the old snapshot frozen, where its cycles could never be
reclaimed: after each swap the heap is unfrozen, collected once and frozen again.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Final

from trackd.live import LiveConfig

# (young, middle, old): a young collection per 50,000 net allocations instead of 700.
THRESHOLDS: Final = (50_000, 20, 100)
SETTLE_GRACE_S: Final = 5.0  # longer than a unary call; a stream's batch takes milliseconds


def settle() -> None:
    """Collects what is garbage now, freezes the rest and raises the thresholds."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


async def settle_on_swap(
    live: LiveConfig,
    *,
    grace: float = SETTLE_GRACE_S,
    forget: Callable[[], None] | None = None,
) -> None:
    """Settles the heap on each datafile snapshot (the current one first), for the daemon's
    life: a full collection per reload, which is rare.

    After a swap it waits `grace` seconds, for calls still holding the old snapshot to end,
    and `forget()`s caches keyed by it: settled while still referenced, the old snapshot
    would be frozen again and its cycles kept until the next reload.
    """
    first = True
    async for _ in live.watch():
        if not first:
            await asyncio.sleep(grace)
            if forget is not None:
                forget()
        first = False
        settle()


__all__ = ["SETTLE_GRACE_S", "THRESHOLDS", "settle", "settle_on_swap"]
