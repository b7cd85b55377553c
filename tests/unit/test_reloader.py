"""Reloader: new datafile bytes replace the live datafile, and a callback (no Tracker) drops
what the new one no longer runs."""

from __future__ import annotations

import asyncio

from tests.support.polling import eventually
from trackd.datafile.model import ProjectConfig
from trackd.errors import Unavailable
from trackd.live import LiveConfig
from trackd.sources import bundled_datafile
from trackd.sources.reloader import Reloader


class Dropper:
    """A drop_stale callback that fails `down` times (the shared store is down) first."""

    def __init__(self, down: int = 0) -> None:
        self.down = down
        self.seen: list[ProjectConfig] = []

    async def __call__(self, config: ProjectConfig) -> int:
        self.seen.append(config)
        if self.down:
            self.down -= 1
            raise Unavailable("the activation store (Redis) is unavailable")
        return 3


async def test_a_new_datafile_goes_live_and_the_callback_drops_what_it_no_longer_runs() -> None:
    live, drop = LiveConfig(None), Dropper()
    reloader = Reloader(live, drop)
    assert await reloader.offer(bundled_datafile(), "test")
    assert live.loaded
    assert drop.seen == [live.config]
    assert not await reloader.offer(bundled_datafile(), "test")  # the same bytes: no change
    assert (reloader.reloads, len(drop.seen)) == (1, 1)


async def test_invalid_bytes_are_counted_and_the_live_datafile_stays() -> None:
    live, drop = LiveConfig(None), Dropper()
    reloader = Reloader(live, drop)
    await reloader.offer(bundled_datafile(), "test")
    before = live.config
    assert not await reloader.offer(b"{", "test")
    assert live.config is before
    assert reloader.failures["invalid"] == 1
    assert len(drop.seen) == 1


async def test_a_drop_that_finds_the_store_down_is_retried_in_the_background() -> None:
    live, drop = LiveConfig(None), Dropper(down=2)
    reloader = Reloader(live, drop)
    reloader.retry_interval = 0.01
    try:
        assert await reloader.offer(bundled_datafile(), "test")  # served despite the failure
        await eventually(lambda: len(drop.seen) == 3)
        assert drop.seen == [live.config] * 3
    finally:
        reloader.close()


async def test_the_first_datafile_is_served_before_its_drop_of_stale_activations_ends() -> None:
    """Readiness never waits on the drop (a SCAN of millions of Redis keys takes seconds)."""
    live, release = LiveConfig(None), asyncio.Event()
    serving: list[bool] = []

    async def slow_drop(config: ProjectConfig) -> int:
        await release.wait()
        return 0

    async def now_serving() -> None:
        serving.append(live.loaded)

    reloader = Reloader(live, slow_drop, on_first_load=now_serving)
    offered = asyncio.create_task(reloader.offer(bundled_datafile(), "test"))
    try:
        await eventually(lambda: serving == [True], within=5.0)
        assert not offered.done()  # the drop is still under way
    finally:
        release.set()
    assert await offered
