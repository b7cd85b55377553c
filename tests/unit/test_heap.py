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
    task = asyncio.create_task(heap.settle_on_swap(live))
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
