"""heap: the long-lived heap is frozen once started and again after each datafile swap."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    live = LiveConfig(parse_datafile(DATAFILE.read_text()))
    # Like an old snapshot (experiments hold their decisions): frozen while alive, a cycle
    # could never be reclaimed unless a swap unfreezes and collects before freezing again.
    cycle = _Cycle()
    gone = weakref.ref(cycle)
    task = asyncio.create_task(heap.settle_on_swap(live, grace=0))
    await asyncio.sleep(0)
    assert gc.get_threshold() == heap.THRESHOLDS
    assert gc.get_freeze_count() > 0
    del cycle
    live.swap(parse_datafile(DATAFILE.read_text()))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    task.cancel()
    assert gone() is None
    assert gc.get_freeze_count() > 0


def experiments_alive() -> int:
    return sum(isinstance(o, Experiment) for o in gc.get_objects())


async def test_a_snapshot_still_cached_at_the_swap_is_reclaimed_by_that_swap() -> None:
    old = parse_datafile(DATAFILE.read_text())
    live = LiveConfig(old)
    task = asyncio.create_task(
        heap.settle_on_swap(live, grace=0.01, forget=records.forget_snapshots)
    )
    await asyncio.sleep(0)  # the first settle
    records.context_of(old)  # the event caches hold the old snapshot, as after traffic
    records.visitor_attributes(old, {"device": "iPhone"})
    del old
    gc.unfreeze()
    gc.collect()
    before = experiments_alive()  # the old snapshot's, and whatever other tests keep
    live.swap(parse_datafile(DATAFILE.read_text()))  # as many experiments as the old one
    await asyncio.sleep(0.1)
    task.cancel()
    gc.unfreeze()
    gc.collect(0)  # young only: an old snapshot frozen again would still be counted
    assert experiments_alive() == before
