"""Reloader: new datafile bytes replace the live datafile, and a callback (no Tracker) drops
what the new one no longer runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

from structlog.testing import capture_logs

from tests.support.polling import eventually
from tests.unit.test_tracker import MemoryEventLog
from trackd.activation import Keep, MemoryActivationStore
from trackd.datafile import parse_datafile
from trackd.datafile.model import ProjectConfig
from trackd.errors import Unavailable
from trackd.live import LiveConfig
from trackd.overrides import MemoryOverrideStore
from trackd.sources import bundled_datafile
from trackd.sources.reloader import Reloader
from trackd.tracking import Tracker


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
    try:
        assert await reloader.offer(bundled_datafile(), "test")
        assert live.loaded
        await eventually(lambda: drop.seen == [live.config])  # in the background
        assert not await reloader.offer(bundled_datafile(), "test")  # the same bytes: no change
        assert (reloader.reloads, len(drop.seen)) == (1, 1)
    finally:
        await reloader.close()


async def test_invalid_bytes_are_counted_and_the_live_datafile_stays() -> None:
    live, drop = LiveConfig(None), Dropper()
    reloader = Reloader(live, drop)
    try:
        await reloader.offer(bundled_datafile(), "test")
        await eventually(lambda: len(drop.seen) == 1)
        before = live.config
        assert not await reloader.offer(b"{", "test")
        assert live.config is before
        assert reloader.failures["invalid"] == 1
        assert len(drop.seen) == 1
    finally:
        await reloader.close()


async def test_a_drop_that_finds_the_store_down_is_retried_in_the_background() -> None:
    live, drop = LiveConfig(None), Dropper(down=2)
    reloader = Reloader(live, drop)
    reloader.retry_interval = 0.01
    try:
        assert await reloader.offer(bundled_datafile(), "test")  # served despite the failure
        await eventually(lambda: len(drop.seen) == 3)
        assert drop.seen == [live.config] * 3
    finally:
        await reloader.close()


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
        await reloader.close()


async def test_a_drop_failing_the_same_way_again_backs_off_and_logs_its_traceback_once() -> None:
    """A deterministic failure late in a paced Redis retain would otherwise rescan the whole
    keyspace, and print a traceback, every second for good."""
    live = LiveConfig(None)
    drop = Dropper(errors=[UNEXPECTED] * 5 + [Unavailable("down"), UNEXPECTED])
    reloader = Reloader(live, drop)
    reloader.retry_interval, reloader.max_retry_interval = 0.01, 0.04
    try:
        with capture_logs() as logs:
            assert await reloader.offer(bundled_datafile(), "test")
            await eventually(lambda: any(x["event"] == "activations_dropped_late" for x in logs))
        assert len(drop.seen) == 8
        failed = [x for x in logs if x["event"] == "activations_drop_failed"]
        # Doubling from the retry interval up to its cap; an outage in between starts over.
        assert [x["retry_in"] for x in failed] == [0.01, 0.02, 0.04, 0.04, 0.04, 0.01]
        assert [x.get("exc_info", False) for x in failed] == [
            True,
            False,
            False,
            False,
            False,
            True,
        ]
        assert [x.get("failures") for x in failed] == [None, 2, 3, 4, 5, None]
    finally:
        await reloader.close()


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
        await reloader.close()


async def test_the_first_datafile_is_served_before_its_drop_of_stale_activations_ends() -> None:
    """Readiness never waits on the drop (a SCAN of millions of Redis keys takes minutes), and
    neither does the source that offered it."""
    live, release = LiveConfig(None), asyncio.Event()
    serving: list[bool] = []
    dropped: list[ProjectConfig] = []

    async def slow_drop(config: ProjectConfig) -> int:
        await release.wait()
        dropped.append(config)
        return 0

    async def now_serving() -> None:
        serving.append(live.loaded)

    reloader = Reloader(live, slow_drop, on_first_load=now_serving)
    try:
        async with asyncio.timeout(10):  # fails, rather than hangs, if it waits for the drop
            assert await reloader.offer(bundled_datafile(), "test")
        assert (serving, dropped) == ([True], [])  # the drop is still under way
        release.set()
        await eventually(lambda: dropped == [live.config])
    finally:
        await reloader.close()


class HeldStore(MemoryActivationStore):
    """A memory store whose `retain` waits for `release`, as a paced drop over millions of
    Redis keys does for minutes."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.waiting = 0  # retains waiting for `release`
        self.cancelled = 0  # retains cancelled while waiting

    async def retain(self, keep: Keep) -> int:
        self.waiting += 1
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.waiting -= 1
        return await super().retain(keep)


def datafile(revision: str, paused: Collection[str] = ()) -> bytes:
    data: dict[str, Any] = json.loads(bundled_datafile())
    data["revision"] = revision
    for experiment in data["experiments"]:
        if experiment["key"] in paused:
            experiment["status"] = "Paused"
    return json.dumps(data).encode()


# Every experiment of the bundled datafile that runs; revision 2 pauses two, revision 3 runs
# one of them again and pauses another.
RUNNING = ("checkout_flow", "iphone_banner", "checkout_ab")
PAUSED_IN_2 = ("checkout_flow", "iphone_banner")
PAUSED_IN_3 = ("checkout_flow", "checkout_ab")


class Daemon(NamedTuple):
    live: LiveConfig
    store: HeldStore
    reloader: Reloader


async def activated_in_every_experiment() -> Daemon:
    """Revision 1 live, one user activated in each of its running experiments."""
    data = datafile("1")
    live, store = LiveConfig(parse_datafile(data)), HeldStore()
    tracker = Tracker(live, store, MemoryOverrideStore(), MemoryEventLog(store))
    for key in RUNNING:
        experiment = live.config.experiments_by_key[key]
        await store.put(key, experiment.id, experiment.variations[0].id)
    reloader = Reloader(live, tracker.on_new_config)
    reloader.prime(data)
    return Daemon(live, store, reloader)


async def offer(reloader: Reloader, data: bytes) -> bool:
    """`reloader.offer`, failing rather than hanging if it waits for a held drop."""
    async with asyncio.timeout(10):
        return await reloader.offer(data, "test")


async def still_activated(daemon: Daemon) -> set[str]:
    ids = {e.id: key for key, e in daemon.live.config.experiments_by_key.items()}
    return {ids[e] for user in RUNNING for e in await daemon.store.live_for_user(user)}


async def test_a_newer_datafile_is_served_while_an_older_drop_is_still_under_way() -> None:
    """Before 2026-12-07 the drop ran inside the reload: with millions of Redis keys a newer
    datafile waited minutes for it. Now the newer one is served at once, and its own drop,
    against the newest running set, is the one that runs."""
    daemon = await activated_in_every_experiment()
    reloader, store = daemon.reloader, daemon.store
    try:
        second = asyncio.create_task(reloader.offer(datafile("2", PAUSED_IN_2), "test"))
        await eventually(lambda: store.waiting == 1)  # revision 2's drop is held
        third = asyncio.create_task(reloader.offer(datafile("3", PAUSED_IN_3), "test"))
        await eventually(lambda: daemon.live.config.revision == "3")
        assert not store.release.is_set()
        store.release.set()
        assert (await second, await third) == (True, True)
        # iphone_banner runs again in 3: its activation is kept, where 2's drop had dropped it.

        async def dropped_what_3_stopped() -> bool:
            return await still_activated(daemon) == {"iphone_banner"}

        await eventually(dropped_what_3_stopped)
        assert reloader.reloads == 2
    finally:
        await reloader.close()


async def test_a_superseded_drop_is_logged_and_the_newest_drop_logs_what_it_dropped() -> None:
    daemon = await activated_in_every_experiment()
    reloader, store = daemon.reloader, daemon.store
    try:
        with capture_logs() as logs:
            assert await offer(reloader, datafile("2", PAUSED_IN_2))
            await eventually(lambda: store.waiting == 1)
            assert await offer(reloader, datafile("3", PAUSED_IN_3))
            store.release.set()
            await eventually(lambda: any(x["event"] == "activations_dropped" for x in logs))
        drops = [x for x in logs if x["event"].startswith("activations_drop")]
        assert [(x["event"], x["revision"], x["log_level"]) for x in drops] == [
            ("activations_drop_cancelled", "2", "info"),
            ("activations_dropped", "3", "info"),
        ]
        assert drops[0]["superseded_by"] == "3"
        assert drops[1]["dropped"] == 2
        assert store.cancelled == 1
        loaded = [x["revision"] for x in logs if x["event"] == "datafile_loaded"]
        assert loaded == ["2", "3"]
    finally:
        await reloader.close()


async def test_shutdown_cancels_a_drop_under_way_and_waits_for_it_to_end() -> None:
    """Left pending, the drop would be destroyed with the event loop ("Task was destroyed but
    it is pending"), or still be calling a store that shutdown has closed."""
    daemon = await activated_in_every_experiment()
    reloader, store = daemon.reloader, daemon.store
    with capture_logs() as logs:
        assert await offer(reloader, datafile("2", PAUSED_IN_2))
        await eventually(lambda: store.waiting == 1)
        await reloader.close()
    assert (store.waiting, store.cancelled) == (0, 1)  # ended, not just asked to
    [cancelled] = [x for x in logs if x["event"] == "activations_drop_cancelled"]
    assert (cancelled["revision"], cancelled["superseded_by"]) == ("2", None)
