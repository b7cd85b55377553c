"""heap: the long-lived heap is frozen once started and again after each datafile swap."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.polling import eventually
from trackd import heap
from trackd.datafile import parse_datafile
from trackd.datafile.model import Experiment
from trackd.events import records
from trackd.live import LiveConfig

DATAFILE = Path(__file__).parents[1] / "data" / "datafile.json"


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class _Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_settles_on_the_current_snapshot_and_reclaims_cycles_after_a_swap() -> None:
    gc.unfreeze()  # so that only the task's first settle can freeze anything
    live = LiveConfig(parse_datafile(DATAFILE.read_text()))
    # Like an old snapshot (experiments hold their decisions): frozen while alive, a cycle
    # could never be reclaimed unless a swap unfreezes and collects before freezing again.
    cycle = _Cycle()
    gone = weakref.ref(cycle)
    task = asyncio.create_task(heap.settle_on_swap(live, grace=0))
    try:
        await eventually(lambda: gc.get_freeze_count() > 0)  # the first settle
        assert gc.get_threshold() == heap.THRESHOLDS
        del cycle
        live.swap(parse_datafile(DATAFILE.read_text()))
        # Frozen, the cycle is out of every collection but the settle after the swap.
        await eventually(lambda: gone() is None)
        assert gc.get_freeze_count() > 0
    finally:
        task.cancel()


def experiments_alive() -> int:
    return sum(isinstance(o, Experiment) for o in gc.get_objects())


async def test_a_snapshot_still_cached_at_the_swap_is_reclaimed_by_that_swap() -> None:
    old = parse_datafile(DATAFILE.read_text())
    live = LiveConfig(old)
    gc.unfreeze()
    task = asyncio.create_task(
        heap.settle_on_swap(live, grace=0.01, forget=records.forget_snapshots)
    )
    try:
        await eventually(lambda: gc.get_freeze_count() > 0)  # the first settle
        records.context_of(old)  # the event caches hold the old snapshot, as after traffic
        records.visitor_attributes(old, {"device": "iPhone"})
        del old
        gc.unfreeze()
        gc.collect()
        before = experiments_alive()  # the old snapshot's, and whatever other tests keep
        live.swap(parse_datafile(DATAFILE.read_text()))  # as many experiments as the old one
        await eventually(lambda: gc.get_freeze_count() > 0)  # unfrozen above: the swap's settle
    finally:
        task.cancel()
    gc.unfreeze()
    gc.collect(0)  # young only: an old snapshot frozen again would still be counted
    assert experiments_alive() == before
