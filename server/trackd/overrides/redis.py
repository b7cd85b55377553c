"""Overrides in Redis, shared by every worker and replica naming the same database and
`--redis-key-prefix` (`--activation-store redis`).

Layout:
- `{prefix}o:{user_id}`: one hash per user holding both kinds, so `for_user` (what Activate
  and Decide read) is one HGETALL: a Decide of 50 flags reads the user's overrides once.
  Fields: `v` + experiment id (a forced variation), `d` + flag key + US + rule key (a forced
  decision for a rule; US is the ASCII unit separator, and the flag key is escaped to hold
  none: `store.joined`), `f` + flag key (for the whole flag). Value: `expiry_ms SP value`.
  The hash's own PEXPIRE is the TTL from its last write, so Redis reclaims a user's hash by
  itself; an expired field of a live hash is invisible (the scripts compare its expiry).
- `{prefix}o:count:v` and `{prefix}o:count:d`: sorted sets of `user_id US field` (the user id
  escaped as a flag key is, so one user's member is never another's) scored by expiry, one
  per kind: the bound (`max_entries` live ones of each kind) counted across the fleet, exact,
  as the per-process maps counted theirs. Only a set touches them.

Every call is one round trip (a Lua script; expiry is Redis's clock, the same for every
replica). Redis down: every call raises `OverrideStoreUnavailable` quickly, with its own
outage window (as the activation store's) and recovers by itself on the next call after it.
A pool with every connection busy fails that call alone, opening no window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from redis.asyncio import Redis

from trackd.activation.store import check_limits
from trackd.errors import OverrideStoreUnavailable, ResourceExhausted
from trackd.outage import Outage
from trackd.overrides.store import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_TTL_SECONDS,
    NO_OVERRIDES,
    DecisionContext,
    UserOverrides,
    check_decision,
    check_variation,
    decision_context,
    decision_field,
    joined,
)
from trackd.redis_calls import LIVE_FIELDS, NOW, RedisCalls

# `live(value)`: a stored value's override, or nil once expired.
_PRELUDE: Final = (
    NOW
    + r"""
local function live(value)
  if not value then return nil end
  local sp = string.find(value, ' ', 1, true)
  if sp == nil or tonumber(string.sub(value, 1, sp - 1)) <= now then return nil end
  return string.sub(value, sp + 1)
end
"""
)

# KEYS: user hash, count set; ARGV: field, value, ttl_ms, max_entries, count member.
# 1 when set, 0 when the kind is full.
_SET: Final = (
    _PRELUDE
    + r"""
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if not redis.call('ZSCORE', KEYS[2], ARGV[5]) and
   redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  return 0
end
local expiry = string.format('%.0f', now + ttl)
redis.call('ZADD', KEYS[2], expiry, ARGV[5])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('HSET', KEYS[1], ARGV[1], expiry .. ' ' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""
)

# KEYS: user hash; ARGV: field. The live value or nil.
_GET: Final = _PRELUDE + "return live(redis.call('HGET', KEYS[1], ARGV[1]))\n"

# KEYS: user hash, count set; ARGV: field, count member. 1 if a live one was removed.
_REMOVE: Final = (
    _PRELUDE
    + r"""
local was = live(redis.call('HGET', KEYS[1], ARGV[1]))
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
if was then return 1 end
return 0
"""
)

# KEYS: user hash, decisions' count set; ARGV: count member prefix (user_id US).
# How many live forced decisions were removed.
_REMOVE_DECISIONS: Final = (
    _PRELUDE
    + r"""
local all = redis.call('HGETALL', KEYS[1])
local removed = 0
for j = 1, #all, 2 do
  local kind = string.sub(all[j], 1, 1)
  if kind == 'd' or kind == 'f' then
    if live(all[j + 1]) then removed = removed + 1 end
    redis.call('HDEL', KEYS[1], all[j])
    redis.call('ZREM', KEYS[2], ARGV[1] .. all[j])
  end
end
return removed
"""
)

# KEYS: user hash. Flat {field, value, ...} of the live overrides.
_ALL: Final = _PRELUDE + LIVE_FIELDS + "return live_fields(KEYS[1])\n"


class RedisOverrideStore:
    """`OverrideStore` in Redis; `client` is shared with the activation store (its pool)."""

    remote = True

    def __init__(
        self,
        client: Redis,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        prefix: str = "trackd:",
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_limits(ttl, max_entries)
        self._client = client
        self._ttl_ms = max(1, round(ttl * 1000))
        self._max_entries = max_entries
        self._prefix = prefix
        self._variation_count = prefix + "o:count:v"
        self._decision_count = prefix + "o:count:d"
        self._set = client.register_script(_SET)
        self._get = client.register_script(_GET)
        self._remove = client.register_script(_REMOVE)
        self._remove_decisions = client.register_script(_REMOVE_DECISIONS)
        self._all = client.register_script(_ALL)
        self._outage = Outage("override_store", retry_interval, clock)
        self._calls = RedisCalls("override store", OverrideStoreUnavailable, self._outage)

    @property
    def ttl(self) -> float:
        return self._ttl_ms / 1000

    @property
    def client(self) -> Redis:
        return self._client

    @property
    def available(self) -> bool:
        return self._outage.available

    def _key(self, user_id: str) -> str:
        return self._prefix + "o:" + user_id

    async def _put(self, user_id: str, field: str, value: str, count_key: str, what: str) -> None:
        keys = [self._key(user_id), count_key]
        args: list[str | int] = [
            field,
            value,
            self._ttl_ms,
            self._max_entries,
            joined(user_id, field),
        ]
        if not await self._calls.script(self._set, keys, args):
            raise ResourceExhausted(f"{what} are full ({self._max_entries}); remove some first")

    async def _read(self, user_id: str, field: str) -> str | None:
        value = await self._calls.script(self._get, [self._key(user_id)], [field])
        return None if value is None else str(value)

    async def _delete(self, user_id: str, field: str, count_key: str) -> bool:
        keys = [self._key(user_id), count_key]
        args = [field, joined(user_id, field)]
        return bool(await self._calls.script(self._remove, keys, args))

    async def set_variation(self, user_id: str, experiment_id: str, variation_id: str) -> None:
        check_variation(experiment_id, variation_id)
        field = "v" + experiment_id
        await self._put(user_id, field, variation_id, self._variation_count, "forced variations")

    async def get_variation(self, user_id: str, experiment_id: str) -> str | None:
        return await self._read(user_id, "v" + experiment_id)

    async def remove_variation(self, user_id: str, experiment_id: str) -> bool:
        return await self._delete(user_id, "v" + experiment_id, self._variation_count)

    async def set_decision(
        self, user_id: str, flag_key: str, rule_key: str | None, variation_key: str
    ) -> None:
        check_decision(flag_key, variation_key)
        field = decision_field(flag_key, rule_key)
        await self._put(user_id, field, variation_key, self._decision_count, "forced decisions")

    async def get_decision(self, user_id: str, flag_key: str, rule_key: str | None) -> str | None:
        return await self._read(user_id, decision_field(flag_key, rule_key))

    async def remove_decision(self, user_id: str, flag_key: str, rule_key: str | None) -> bool:
        field = decision_field(flag_key, rule_key)
        return await self._delete(user_id, field, self._decision_count)

    async def remove_all_decisions(self, user_id: str) -> int:
        keys = [self._key(user_id), self._decision_count]
        args = [joined(user_id, "")]  # the prefix of each of the user's count members
        return int(await self._calls.script(self._remove_decisions, keys, args))

    async def for_user(self, user_id: str) -> UserOverrides:
        flat = await self._calls.script(self._all, [self._key(user_id)], [])
        if not flat:
            return NO_OVERRIDES
        variations: dict[str, str] = {}
        decisions: dict[DecisionContext, str] = {}
        for j in range(0, len(flat), 2):
            field, value = flat[j], flat[j + 1]
            if field[0] == "v":
                variations[field[1:]] = value
            else:
                decisions[decision_context(field)] = value
        return UserOverrides(variations, decisions)

    async def close(self) -> None:
        return None  # the client belongs to the activation store, which closes it
