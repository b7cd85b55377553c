"""Activate and Decide with the Redis stores: the override read and the activation read are
sent together, so each costs one round trip to Redis fewer than the two in turn.

Counted, not timed: a loopback proxy between the stores and a real redis-server counts the
rounds the tracker waited through (tests/support/redis_proxy.py), each reply held a little
so that reads sent together are surely both in flight before the first answer.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest

from tests.support.event_log import ListEventLog
from tests.support.redis_proxy import RedisProxy
from tests.support.redis_server import RedisServer
from trackd.activation.redis import RedisActivationStore
from trackd.datafile import parse_datafile
from trackd.decision.engine import Reason
from trackd.live import LiveConfig
from trackd.overrides.redis import RedisOverrideStore
from trackd.tracking import Tracker

DATA = Path(__file__).parent.parent / "data"
EXPERIMENT = "ab_running"  # tests/data/datafile.json
CHECKOUT = "checkout_redesign"  # tests/data/flags_datafile.json: a feature test, checkout_ab
REPLY_DELAY = 0.05  # well under the stores' 0.5 s socket timeout
_prefixes = itertools.count()


class Proxied:
    def __init__(self, proxy: RedisProxy, datafile: str) -> None:
        self.proxy = proxy
        prefix = f"trackd-rt{next(_prefixes)}:"
        self.activations = RedisActivationStore.from_url(proxy.url, ttl=3600.0, prefix=prefix)
        self.overrides = RedisOverrideStore(self.activations.client, ttl=3600.0, prefix=prefix)
        config = parse_datafile((DATA / datafile).read_bytes())
        self.log = ListEventLog()
        self.tracker = Tracker(LiveConfig(config), self.activations, self.overrides, self.log)

    async def rounds(self, call: Awaitable[object]) -> int:
        self.proxy.reset()
        await call
        return self.proxy.rounds


@pytest.fixture
async def proxy(shared_redis: RedisServer) -> AsyncIterator[RedisProxy]:
    async with RedisProxy(shared_redis.port, delay=REPLY_DELAY) as running:
        yield running


# Calls like those counted, run first: the pool's connections opened and the scripts loaded,
# so a count holds only the calls' own commands.


@pytest.fixture
async def activating(proxy: RedisProxy) -> AsyncIterator[Proxied]:
    proxied = Proxied(proxy, "datafile.json")
    tracker = proxied.tracker
    for user in ("warm1", "warm2"):
        await tracker.activate(EXPERIMENT, user, {})
        await tracker.activate(EXPERIMENT, user, {})
    await tracker.set_forced_variation(EXPERIMENT, "warm1", "variation_a")
    await tracker.activate(EXPERIMENT, "warm1", {})
    await tracker.get_variation(EXPERIMENT, "warm2", {})  # loads `get`'s script
    yield proxied
    await proxied.activations.close()


@pytest.fixture
async def deciding(proxy: RedisProxy) -> AsyncIterator[Proxied]:
    proxied = Proxied(proxy, "flags_datafile.json")
    for user in ("warm1", "warm2"):
        for _ in range(2):
            await proxied.tracker.decide(user, {"country": "US"}, [CHECKOUT])
    yield proxied
    await proxied.activations.close()


def test_the_redis_stores_say_they_are_remote(activating: Proxied) -> None:
    assert activating.activations.remote and activating.overrides.remote


async def test_a_new_activation_is_two_rounds_the_reads_together_then_the_write(
    activating: Proxied,
) -> None:
    """Was three: the forced variation, then the activation, then the write."""
    tracker = activating.tracker
    before = len(activating.log.records)
    rounds = await activating.rounds(tracker.activate(EXPERIMENT, "new", {}))
    assert rounds == 2
    assert len(activating.log.records) == before + 1  # the impression, between the two
    again = await tracker.activate(EXPERIMENT, "new", {})
    assert again.decision.reason is Reason.STICKY  # remembered by the write


async def test_a_sticky_activation_is_one_round(activating: Proxied) -> None:
    """Was two: the forced variation, then refreshing the sticky activation."""
    tracker = activating.tracker
    first = await tracker.activate(EXPERIMENT, "back", {})
    rounds = await activating.rounds(tracker.activate(EXPERIMENT, "back", {}))
    again = await tracker.activate(EXPERIMENT, "back", {})
    assert rounds == 1
    assert again.decision.reason is Reason.STICKY
    assert again.decision.variation == first.decision.variation
    assert not again.impression_recorded


async def test_a_forced_activation_is_two_rounds_over_a_sticky_one_three_over_a_forced_one(
    activating: Proxied,
) -> None:
    """The forced variation is read beside the activation, so the read sent before it was
    known is the sticky one's: a forced decision asks again for what it compares with unless
    that read found a sticky activation (then not the forcing's, which is never sticky)."""
    tracker = activating.tracker
    await tracker.activate(EXPERIMENT, "qa", {})  # sticky in its bucketed variation
    bucketed = await tracker.get_variation(EXPERIMENT, "qa", {})
    assert bucketed[0].variation is not None
    other = "variation_b" if bucketed[0].variation.key == "variation_a" else "variation_a"
    await tracker.set_forced_variation(EXPERIMENT, "qa", other)
    forced = tracker.activate(EXPERIMENT, "qa", {})
    assert await activating.rounds(forced) == 2  # the refresh read found it sticky: no `get`
    again = await tracker.activate(EXPERIMENT, "qa", {})
    assert again.decision.reason is Reason.FORCED and not again.impression_recorded
    assert again.decision.variation is not None and again.decision.variation.key == other
    repeat = await activating.rounds(tracker.activate(EXPERIMENT, "qa", {}))
    assert repeat == 3  # the reads, `get` of the non-sticky activation, its refresh: as before


async def test_a_new_users_decide_is_two_rounds_the_reads_together_then_the_write(
    deciding: Proxied,
) -> None:
    """Was three: the user's overrides, then the live activations, then the write."""
    tracker = deciding.tracker
    before = len(deciding.log.records)
    rounds = await deciding.rounds(tracker.decide("new", {"country": "US"}, [CHECKOUT]))
    assert rounds == 2
    assert len(deciding.log.records) == before + 1  # the decision event, between the two
    again = await tracker.decide("new", {"country": "US"}, [CHECKOUT])
    assert not again.decisions[0].impression_recorded  # remembered by the write


async def test_a_returning_users_decide_is_two_rounds_the_reads_together_then_the_refresh(
    deciding: Proxied,
) -> None:
    """Was three (four before that): the overrides beside the live activations, then `get`
    of each live one for its stickiness, then the refresh. The live activations are now
    read with their stickiness, in the round of the overrides."""
    tracker = deciding.tracker
    first = await tracker.decide("back", {"country": "US"}, [CHECKOUT])
    assert first.decisions[0].impression_recorded
    rounds = await deciding.rounds(tracker.decide("back", {"country": "US"}, [CHECKOUT]))
    assert rounds == 2
    again = await tracker.decide("back", {"country": "US"}, [CHECKOUT])
    assert not again.decisions[0].impression_recorded  # still sticky: nothing sent again
    assert again.decisions[0].decision.variation == first.decisions[0].decision.variation


async def test_get_variation_is_one_round_its_two_reads_together(activating: Proxied) -> None:
    """Was two: the activation, then the forced variation."""
    tracker = activating.tracker
    first = await tracker.activate(EXPERIMENT, "back", {})
    rounds = await activating.rounds(tracker.get_variation(EXPERIMENT, "back", {}))
    assert rounds == 1
    decision, _ = await tracker.get_variation(EXPERIMENT, "back", {})
    assert decision.reason is Reason.STICKY and decision.variation == first.decision.variation
    assert first.decision.variation is not None
    other = "variation_b" if first.decision.variation.key == "variation_a" else "variation_a"
    await tracker.set_forced_variation(EXPERIMENT, "back", other)
    forced = await activating.rounds(tracker.get_variation(EXPERIMENT, "back", {}))
    decision, _ = await tracker.get_variation(EXPERIMENT, "back", {})
    assert forced == 1
    assert decision.reason is Reason.FORCED
    assert decision.variation is not None and decision.variation.key == other


async def test_a_whitelisted_activation_is_two_rounds_its_read_sent_with_the_overrides(
    activating: Proxied,
) -> None:
    """Was three: the forced variation, then `get` (a whitelisted decision does not stick),
    then the write (a new activation) or the refresh (a repeat)."""
    tracker = activating.tracker
    new = await activating.rounds(tracker.activate(EXPERIMENT, "vip_user", {}))
    repeat = await activating.rounds(tracker.activate(EXPERIMENT, "vip_user", {}))
    assert (new, repeat) == (2, 2)
    again = await tracker.activate(EXPERIMENT, "vip_user", {})
    assert again.decision.reason is Reason.WHITELISTED and not again.impression_recorded
