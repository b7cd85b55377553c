"""Reloader: new datafile bytes replace the live datafile, and a callback (no Tracker) drops
what the new one no longer runs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from structlog.testing import capture_logs

from tests.support.polling import eventually
from trackd.datafile.model import ProjectConfig
from trackd.errors import Unavailable
from trackd.live import LiveConfig
from trackd.sources import bundled_datafile
from trackd.sources.reloader import Reloader


class Dropper:
    """A drop_stale callback that fails `down` times (the shared store is down) first, or
    raises each of `errors` in turn first."""

    def __init__(self, down: int = 0, errors: Sequence[Exception] = ()) -> None:
        self.errors = [*errors] or [
            Unavailable("the activation store (Redis) is unavailable") for _ in range(down)
        ]
        self.seen: list[ProjectConfig] = []

    async def __call__(self, config: ProjectConfig) -> int:
        self.seen.append(config)
        if self.errors:
            raise self.errors.pop(0)
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


# Not an outage: a bug, or a Redis reply that trackd.redis_down does not name (redis-py's
# InvalidResponse, an asyncio RuntimeError on a connection a cancelled call left reading).
UNEXPECTED = RuntimeError("readuntil() called while another coroutine is already waiting")


async def test_a_deferred_drop_that_meets_an_unexpected_error_is_logged_and_retried() -> None:
    """The retry task must not die of it: the drop would never happen, and nothing said so."""
    live = LiveConfig(None)
    drop = Dropper(errors=[Unavailable("down"), UNEXPECTED])
    reloader = Reloader(live, drop)
    reloader.retry_interval = 0.01
    try:
        with capture_logs() as logs:
            assert await reloader.offer(bundled_datafile(), "test")
            await eventually(lambda: any(x["event"] == "activations_dropped_late" for x in logs))
        assert drop.seen == [live.config] * 3
        failed = [x for x in logs if x["event"] == "activations_drop_failed"]
        assert [(x["log_level"], x["exc_info"]) for x in failed] == [("error", True)]
    finally:
        reloader.close()


async def test_a_drop_that_meets_an_unexpected_error_still_serves_and_is_retried() -> None:
    live, drop = LiveConfig(None), Dropper(errors=[UNEXPECTED])
    reloader = Reloader(live, drop)
    reloader.retry_interval = 0.01
    try:
        with capture_logs() as logs:
            assert await reloader.offer(bundled_datafile(), "test")  # not raised to the source
            assert reloader.reloads == 1
            await eventually(lambda: len(drop.seen) == 2)
        assert drop.seen == [live.config] * 2
        assert [x["event"] for x in logs if x["log_level"] == "error"] == [
            "activations_drop_failed"
        ]
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
