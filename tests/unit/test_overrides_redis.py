"""Overrides in Redis while Redis goes away and comes back: calls that need an override say
they degraded and decide without it, calls that set or read one fail as UNAVAILABLE, and
everything recovers by itself once Redis answers again."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.support.redis_server import redis_server
from tests.unit.test_tracker import DATAFILE, EXPERIMENT, OTHER, MemoryEventLog
from trackd.activation import MemoryActivationStore
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
