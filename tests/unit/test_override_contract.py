"""The override store contract, run against every store: in memory, host-local (LMDB) and
in a real Redis.

Forced variations and forced decisions, each living `--override-ttl` after it was set and
bounded in number per kind, whatever holds them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.polling import eventually
from trackd.errors import InvalidArgument, ResourceExhausted
from trackd.overrides import NO_OVERRIDES, MemoryOverrideStore, OverrideStore, UserOverrides
from trackd.overrides.local import LocalOverrideStore
from trackd.overrides.redis import RedisOverrideStore

STORES = ["memory", "local", "redis"]


def _make(
    request: pytest.FixtureRequest, *, ttl: float = 60.0, max_entries: int = 1000
) -> OverrideStore:
    if request.param == "memory":
        return MemoryOverrideStore(ttl=ttl, max_entries=max_entries)
    if request.param == "local":
        directory = request.getfixturevalue("tmp_path") / "overrides"
        return LocalOverrideStore(directory, ttl=ttl, max_entries=max_entries)
    from redis.asyncio import Redis

    url = request.getfixturevalue("shared_redis").url
    return RedisOverrideStore(
        Redis.from_url(url, decode_responses=True), ttl=ttl, max_entries=max_entries
    )


async def _emptied(store: OverrideStore) -> OverrideStore:
    if isinstance(store, RedisOverrideStore):  # the module's Redis: earlier tests' keys
        await store.client.flushdb()
    return store


async def _closed(store: OverrideStore) -> None:
    await store.close()
    if isinstance(store, RedisOverrideStore):  # its client is the activation store's
        await store.client.aclose()


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[OverrideStore]:
    made = await _emptied(_make(request))
    yield made
    await _closed(made)


@pytest.fixture(params=STORES)
async def short_lived(request: pytest.FixtureRequest) -> AsyncIterator[OverrideStore]:
    """A store whose overrides live 0.3 s."""
    made = await _emptied(_make(request, ttl=0.3))
    yield made
    await _closed(made)


@pytest.fixture(params=STORES)
async def small(request: pytest.FixtureRequest) -> AsyncIterator[OverrideStore]:
    """A store holding at most 2 overrides of each kind, living 0.3 s."""
    made = await _emptied(_make(request, ttl=0.3, max_entries=2))
    yield made
    await _closed(made)


async def test_a_forced_variation_is_set_read_replaced_and_removed(store: OverrideStore) -> None:
    assert await store.get_variation("u1", "e1") is None
    await store.set_variation("u1", "e1", "v1")
    assert await store.get_variation("u1", "e1") == "v1"
    assert await store.get_variation("u2", "e1") is None
    assert await store.get_variation("u1", "e2") is None
    await store.set_variation("u1", "e1", "v2")
    assert await store.get_variation("u1", "e1") == "v2"
    assert await store.remove_variation("u1", "e1") is True
    assert await store.get_variation("u1", "e1") is None
    assert await store.remove_variation("u1", "e1") is False


async def test_a_forced_decision_is_kept_per_flag_and_per_rule(store: OverrideStore) -> None:
    await store.set_decision("u1", "flag", None, "whole")
    await store.set_decision("u1", "flag", "rule", "ruled")
    assert await store.get_decision("u1", "flag", None) == "whole"
    assert await store.get_decision("u1", "flag", "rule") == "ruled"
    assert await store.get_decision("u1", "flag", "other") is None
    assert await store.get_decision("u2", "flag", None) is None
    assert await store.remove_decision("u1", "flag", None) is True
    assert await store.remove_decision("u1", "flag", None) is False
    assert await store.get_decision("u1", "flag", "rule") == "ruled"


async def test_remove_all_decisions_leaves_forced_variations_and_other_users(
    store: OverrideStore,
) -> None:
    await store.set_decision("u1", "f1", None, "a")
    await store.set_decision("u1", "f2", "r", "b")
    await store.set_decision("u2", "f1", None, "c")
    await store.set_variation("u1", "e1", "v1")
    assert await store.remove_all_decisions("u1") == 2
    assert await store.remove_all_decisions("u1") == 0
    assert await store.for_user("u1") == UserOverrides({"e1": "v1"}, {})
    assert await store.get_decision("u2", "f1", None) == "c"


async def test_for_user_returns_everything_forced_for_the_user(store: OverrideStore) -> None:
    assert await store.for_user("u1") == NO_OVERRIDES
    await store.set_variation("u1", "e1", "v1")
    await store.set_variation("u1", "e2", "v2")
    await store.set_decision("u1", "flag", None, "whole")
    await store.set_decision("u1", "flag", "rule", "ruled")
    await store.set_variation("u2", "e1", "other")
    assert await store.for_user("u1") == UserOverrides(
        {"e1": "v1", "e2": "v2"}, {("flag", None): "whole", ("flag", "rule"): "ruled"}
    )


async def test_any_user_id_is_kept_apart_from_the_keys(store: OverrideStore) -> None:
    """The user id may be any string, empty included, as the SDK accepts; keys with a
    separator in them stay apart."""
    await store.set_variation("", "e1", "v-empty")
    await store.set_decision("a\x1fb", "flag", "rule\x1fx", "k")
    assert await store.get_variation("", "e1") == "v-empty"
    assert await store.get_decision("a\x1fb", "flag", "rule\x1fx") == "k"
    assert await store.for_user("a") == NO_OVERRIDES


async def test_keys_holding_the_separator_round_trip_exactly(store: OverrideStore) -> None:
    """The text stores join a flag and rule key with US (\\x1f): a flag key holding it, or
    the escape byte, is read back as it was set and never meets another (flag, rule)."""
    contexts = [("a\x1fb", "c"), ("a", "b\x1fc"), ("a\x1b", "b"), ("a\x1bs", "b"), ("\x1f", "")]
    for n, (flag_key, rule_key) in enumerate(contexts):
        await store.set_decision("u1", flag_key, rule_key, f"k{n}")
    for n, (flag_key, rule_key) in enumerate(contexts):
        assert await store.get_decision("u1", flag_key, rule_key) == f"k{n}"
    assert (await store.for_user("u1")).decisions == {
        context: f"k{n}" for n, context in enumerate(contexts)
    }
    assert await store.remove_decision("u1", "a\x1fb", "c") is True
    assert await store.get_decision("u1", "a", "b\x1fc") == "k1"
    assert await store.remove_all_decisions("u1") == len(contexts) - 1


async def test_a_user_id_holding_the_separator_is_counted_apart(small: OverrideStore) -> None:
    """Redis counts each override as `user_id US field` across the fleet: two users whose
    id and field meet at a separator are still two overrides of the bound."""
    await small.set_decision("a", "F", "fX", "k")
    await small.set_decision("a\x1fdF", "X", None, "k")  # both were `a US dF US fX`
    with pytest.raises(ResourceExhausted):
        await small.set_decision("u3", "flag", None, "k")
    assert await small.remove_all_decisions("a\x1fdF") == 1
    assert await small.get_decision("a", "F", "fX") == "k"
    await small.set_decision("u3", "flag", None, "k")
    with pytest.raises(ResourceExhausted):  # "a"'s override is still counted
        await small.set_decision("u4", "flag", None, "k")


async def test_empty_ids_and_keys_are_refused(store: OverrideStore) -> None:
    with pytest.raises(InvalidArgument):
        await store.set_variation("u1", "", "v1")
    with pytest.raises(InvalidArgument):
        await store.set_variation("u1", "e1", "")
    with pytest.raises(InvalidArgument):
        await store.set_decision("u1", "", None, "k")
    with pytest.raises(InvalidArgument):
        await store.set_decision("u1", "flag", None, "")


async def test_overrides_expire_ttl_after_they_were_set(short_lived: OverrideStore) -> None:
    await short_lived.set_variation("u1", "e1", "v1")
    await short_lived.set_decision("u1", "flag", None, "k")
    assert await short_lived.for_user("u1") == UserOverrides({"e1": "v1"}, {("flag", None): "k"})

    async def gone() -> bool:
        return await short_lived.for_user("u1") == NO_OVERRIDES

    await eventually(gone, within=5.0)
    assert await short_lived.get_variation("u1", "e1") is None
    assert await short_lived.get_decision("u1", "flag", None) is None
    assert await short_lived.remove_variation("u1", "e1") is False
    assert await short_lived.remove_all_decisions("u1") == 0


async def test_setting_again_restarts_the_ttl(short_lived: OverrideStore) -> None:
    await short_lived.set_variation("u1", "e1", "v1")
    await asyncio.sleep(0.2)
    await short_lived.set_variation("u1", "e1", "v1")
    await asyncio.sleep(0.2)  # 0.4 s after the first set, 0.2 s after the second
    assert await short_lived.get_variation("u1", "e1") == "v1"


async def test_a_full_kind_refuses_new_overrides_until_some_go(small: OverrideStore) -> None:
    await small.set_variation("u1", "e1", "v1")
    await small.set_variation("u2", "e1", "v1")
    with pytest.raises(ResourceExhausted, match="forced variations are full"):
        await small.set_variation("u3", "e1", "v1")
    await small.set_variation("u1", "e1", "v2")  # replacing one always works
    # The other kind has its own bound.
    await small.set_decision("u3", "flag", None, "k")
    await small.set_decision("u3", "flag", "rule", "k")
    with pytest.raises(ResourceExhausted, match="forced decisions are full"):
        await small.set_decision("u4", "flag", None, "k")
    assert await small.remove_variation("u2", "e1") is True
    await small.set_variation("u3", "e1", "v1")  # removing one makes room
    assert await small.remove_all_decisions("u3") == 2
    await small.set_decision("u4", "flag", None, "k")

    async def room_again() -> bool:  # expired overrides no longer count
        try:
            await small.set_variation("u9", "e1", "v1")
        except ResourceExhausted:
            return False
        return True

    await eventually(room_again, within=5.0)
