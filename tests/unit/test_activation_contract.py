"""The activation store contract, run against both stores: in memory and in a real Redis.

What every `ActivationStore` must do whatever holds it; each store's own file tests what only
it does (the memory store's eviction and sharding, Redis's expiry and outages).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.polling import eventually
from trackd.activation import ActivationStore, Held, Sticky
from trackd.activation.memory import MemoryActivationStore
from trackd.activation.redis import RedisActivationStore


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ActivationStore]:
    made: ActivationStore
    if request.param == "memory":
        made = MemoryActivationStore(ttl=60.0, max_entries=1000)
    else:
        shared = RedisActivationStore.from_url(
            request.getfixturevalue("shared_redis").url, ttl=60.0
        )
        await shared.client.flushdb()
        made = shared
    yield made
    await made.close()


async def test_put_replaces_the_variation(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u1", "e1", "v2")
    assert await store.get("u1", "e1") == Held("v2", True)


async def test_activations_are_per_user_and_experiment(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u1", "e2", "v3")
    await store.put("u2", "e1", "v2")
    assert await store.get("u1", "e1") == Held("v1", True)
    assert await store.get("u1", "e2") == Held("v3", True)
    assert await store.get("u2", "e1") == Held("v2", True)
    assert await store.get("u2", "e2") is None
    assert await store.get("u3", "e1") is None
    assert await store.get("u1", "never-seen") is None


async def test_refresh_or_put_stores_the_candidate_when_nothing_is_live(
    store: ActivationStore,
) -> None:
    assert await store.refresh_or_put("u1", "e1", "v1") == Sticky("v1", False)
    assert await store.get("u1", "e1") == Held("v1", True)


async def test_refresh_or_put_without_a_candidate_stores_nothing(
    store: ActivationStore,
) -> None:
    assert await store.refresh_or_put("u1", "e1", None) == Sticky(None, False)
    assert await store.get("u1", "e1") is None
    await store.put("u1", "e1", "v1")
    assert await store.refresh_or_put("u1", "e1", None) == Sticky("v1", True)


async def test_live_for_user_filters_by_experiment_ids(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u1", "e2", "v2")
    await store.put("u1", "e3", "v3")
    await store.put("u2", "e4", "v4")
    assert await store.live_for_user("u1", ["e1", "e3", "e4", "unknown"]) == {
        "e1": "v1",
        "e3": "v3",
    }
    assert await store.live_for_user("u1", frozenset()) == {}


async def test_live_for_users_answers_each_lookup_in_order(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u1", "e2", "v2")
    await store.put("u2", "e2", "v5")
    result = await store.live_for_users(
        [("u1", ["e2"]), ("u2", None), ("u3", None), ("u1", None), ("u2", ["e1"])]
    )
    assert result == [{"e2": "v2"}, {"e2": "v5"}, {}, {"e1": "v1", "e2": "v2"}, {}]
    assert await store.live_for_users([]) == []


async def test_retain_drops_variations_that_no_longer_exist(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u2", "e1", "v2")
    dropped = await store.retain(lambda _, variation_id: variation_id != "v2")
    assert dropped == 1
    assert await store.get("u1", "e1") == Held("v1", True)
    assert await store.get("u2", "e1") is None
    assert await store.refresh_or_put("u2", "e1", "v1") == Sticky("v1", False)


async def test_a_dropped_experiment_that_returns_starts_empty(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u2", "e1", "v1")
    await store.retain(lambda *_: False)
    await store.put("u2", "e1", "v1")
    assert await store.get("u1", "e1") is None
    assert await store.live_for_user("u1") == {}
    assert await store.live_for_user("u2") == {"e1": "v1"}


async def test_retain_keeping_everything_drops_nothing(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    assert await store.retain(lambda *_: True) == 0
    assert await store.get("u1", "e1") == Held("v1", True)


async def test_retain_drops_experiments_that_stopped_running(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u2", "e1", "v2")
    await store.put("u1", "e2", "v3")
    dropped = await store.retain(lambda experiment_id, _: experiment_id != "e1")
    assert dropped == 2
    assert await store.live_for_user("u1") == {"e2": "v3"}
    assert await store.get("u2", "e1") is None
    assert (await store.stats()).dropped == 2


async def test_entries_are_the_activations_held(store: ActivationStore) -> None:
    """Activations, not users or keys: one user in three experiments is three."""
    for experiment_id in ("e1", "e2", "e3"):
        await store.put("u1", experiment_id, "v1")
    await store.put("u2", "e1", "v2")

    async def four() -> bool:  # a shared store may count in the background
        return (await store.stats()).entries == 4

    await eventually(four)


async def test_an_activation_that_is_not_sticky_reads_back_as_such(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1", sticky=False)
    await store.put("u1", "e2", "v2")
    assert await store.get("u1", "e1") == Held("v1", sticky=False)
    assert await store.get("u1", "e2") == Held("v2", sticky=True)
    # Attribution does not care: both are live activations, by their plain variation ids.
    assert await store.live_for_user("u1") == {"e1": "v1", "e2": "v2"}
    assert await store.live_for_users([("u1", ["e1"])]) == [{"e1": "v1"}]


async def test_refresh_or_put_does_not_stick_to_an_activation_that_is_not_sticky(
    store: ActivationStore,
) -> None:
    await store.put("u1", "e1", "forced", sticky=False)
    assert await store.refresh_or_put("u1", "e1", None) == Sticky(None, False)
    assert await store.get("u1", "e1") == Held("forced", sticky=False)  # left as it was
    assert await store.refresh_or_put("u1", "e1", "bucketed") == Sticky("bucketed", False)
    assert await store.get("u1", "e1") == Held("bucketed", sticky=True)
    assert await store.refresh_or_put("u1", "e1", "other") == Sticky("bucketed", True)


async def test_put_replaces_the_stickiness_too(store: ActivationStore) -> None:
    await store.put("u1", "e1", "v1")
    await store.put("u1", "e1", "v1", sticky=False)
    assert await store.get("u1", "e1") == Held("v1", sticky=False)
    await store.put("u1", "e1", "v1")
    assert await store.get("u1", "e1") == Held("v1", sticky=True)


async def test_retain_sees_the_plain_variation_of_an_activation_that_is_not_sticky(
    store: ActivationStore,
) -> None:
    await store.put("u1", "e1", "v1", sticky=False)
    await store.put("u2", "e1", "v2", sticky=False)
    seen: set[tuple[str, str]] = set()

    def keep(experiment_id: str, variation_id: str) -> bool:
        seen.add((experiment_id, variation_id))
        return variation_id != "v1"

    assert await store.retain(keep) == 1
    assert seen == {("e1", "v1"), ("e1", "v2")}
    assert await store.get("u1", "e1") is None
    assert await store.get("u2", "e1") == Held("v2", sticky=False)
