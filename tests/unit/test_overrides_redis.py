"""Overrides in Redis while Redis goes away and comes back: calls that need an override say
they degraded and decide without it, calls that set or read one fail as UNAVAILABLE, and
everything recovers by itself once Redis answers again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.support.polling import eventually
from tests.support.redis_server import RedisServer, redis_server
from tests.unit.test_tracker import DATAFILE, EXPERIMENT, OTHER, MemoryEventLog
from trackd.activation import MemoryActivationStore
from trackd.activation.redis import RedisActivationStore
from trackd.datafile import parse_datafile
from trackd.errors import OverrideStoreUnavailable, Unavailable
from trackd.live import LiveConfig
from trackd.overrides import UserOverrides
from trackd.overrides.redis import RedisOverrideStore
from trackd.tracking import Tracker


def test_unavailable_is_a_trackd_unavailable_error() -> None:
    """So the one status table answers UNAVAILABLE for it."""
    assert issubclass(OverrideStoreUnavailable, Unavailable)


async def test_with_redis_down_overrides_degrade_and_recover_by_themselves(
    tmp_path: Path,
) -> None:
    with redis_server(tmp_path / "redis", persist=True) as redis:
        now = [0.0]  # the override store's clock: its retry window is moved by hand
        overrides = RedisOverrideStore(
            Redis.from_url(redis.url, decode_responses=True),
            retry_interval=1.0,
            clock=lambda: now[0],
        )
        activations = MemoryActivationStore(ttl=60.0, max_entries=1000)
        config = parse_datafile(DATAFILE.read_text())
        tracker = Tracker(LiveConfig(config), activations, overrides, MemoryEventLog(activations))
        try:
            bucketed = (await tracker.get_variation(EXPERIMENT, "qa", {}))[0].variation
            assert bucketed is not None
            forced = OTHER[bucketed.key]
            assert await tracker.set_forced_variation(EXPERIMENT, "qa", forced) == forced
            activated = await tracker.activate(EXPERIMENT, "qa", {})
            assert activated.decision.variation is not None
            assert activated.decision.variation.key == forced
            assert not activated.attribution_degraded

            redis.stop()
            down = await tracker.activate(EXPERIMENT, "qa", {})
            assert down.attribution_degraded  # the call says it decided without overrides
            assert down.decision.variation is not None
            assert down.decision.variation.key == bucketed.key
            assert (await tracker.decide("qa", {}, [])).attribution_degraded
            with pytest.raises(OverrideStoreUnavailable):
                await tracker.get_forced_variation(EXPERIMENT, "qa")
            with pytest.raises(OverrideStoreUnavailable):
                await tracker.set_forced_decision("qa", "flag", None, "on")
            assert not overrides.available

            redis.start()  # the append-only file brings the override back
            now[0] += 1.0  # past the retry window: the next call tries Redis again
            assert await tracker.get_forced_variation(EXPERIMENT, "qa") == forced
            back = await tracker.activate(EXPERIMENT, "qa", {})
            assert not back.attribution_degraded
            assert back.decision.variation is not None
            assert back.decision.variation.key == forced
            assert overrides.available
        finally:
            await overrides.close()
            await overrides.client.aclose()


async def test_overrides_live_under_the_key_prefix_with_their_own_ttl(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as redis:
        client = Redis.from_url(redis.url, decode_responses=True)
        overrides = RedisOverrideStore(client, ttl=3600.0, prefix="deploy1:")
        try:
            await overrides.set_variation("qa", "e1", "v1")
            await overrides.set_decision("qa", "flag", "rule", "on")
            keys = sorted(await client.keys("*"))
            assert keys == ["deploy1:o:count:d", "deploy1:o:count:v", "deploy1:o:qa"]
            for key in keys:
                assert 3_590_000 < await client.pttl(key) <= 3_600_000, key
            assert await overrides.for_user("qa") == UserOverrides(
                {"e1": "v1"}, {("flag", "rule"): "on"}
            )
            # The layout the docstring gives, as every earlier version wrote it for keys
            # without US or ESC: a rolling upgrade reads their overrides unchanged.
            assert sorted(await client.hkeys("deploy1:o:qa")) == ["dflag\x1frule", "ve1"]
            counted = await client.zrange("deploy1:o:count:d", 0, -1)
            assert counted == ["qa\x1fdflag\x1frule"]
        finally:
            await client.aclose()


async def test_a_busy_pool_fails_one_call_and_does_not_count_as_redis_down(
    shared_redis: RedisServer,
) -> None:
    """The override store shares the activation store's pool: every connection busy is this
    process overloaded, not Redis down, so it opens no fast-fail window, as for activations."""
    observer = Redis.from_url(shared_redis.url)
    activations = RedisActivationStore.from_url(
        shared_redis.url, max_connections=1, pool_timeout=0.05
    )
    overrides = RedisOverrideStore(activations.client, retry_interval=60.0)
    try:
        # BLPOP holds the only connection until the observer pushes to its list.
        holder = asyncio.create_task(
            activations.client.blpop(["trackd-test:overrides"], timeout=60)
        )

        async def holding() -> bool:
            return int((await observer.info("clients"))["blocked_clients"]) == 1

        await eventually(holding)
        with pytest.raises(OverrideStoreUnavailable, match="busy"):
            await overrides.get_variation("u1", "e1")
        assert overrides.available
        await observer.lpush("trackd-test:overrides", "release")
        await holder
        await overrides.set_variation("u1", "e1", "v1")  # at once: no window was opened
        assert await overrides.get_variation("u1", "e1") == "v1"
    finally:
        await activations.close()
        await observer.aclose()
