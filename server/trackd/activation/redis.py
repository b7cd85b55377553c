"""The shared activation store: Redis, so every replica and worker sees the same activations.

Layout: one hash per user, `{prefix}a:{user_id}`, field = experiment id, value =
`"{expiry_ms} {variation_id}"`, expiry in Redis server time (every replica reads the same
clock). The key's own PEXPIRE is set to the TTL on every write, so a user's hash vanishes
TTL after their last Activate, and Redis reclaims it without any scan of ours; an expired
field inside a live hash is invisible (the scripts compare its expiry) and pruned by the
next write to that hash. Why a hash per user rather than a key per (user, experiment): Track
for an event that belongs to every experiment needs all of a user's activations, which is
one HGETALL here and a SCAN or an index there; and a user's few experiments pack into one
small listpack.

Every call is one round trip: a Lua script (EVALSHA; re-sent as a whole after a Redis
restart emptied its script cache). A TrackStream batch is one pipeline of scripts of at most
`batch_keys` users each, so a 10,000-event batch never holds Redis for long.

`retain` finds the (experiment, variation) pairs ever written in the set `{prefix}pairs`
(SADD on every write, in the same script), asks `keep`, and if any pair is dropped, SCANs the
user hashes in chunks off the request path, deleting the dropped fields.

Redis down: every method raises `ActivationStoreUnavailable` (a `trackd.errors.Unavailable`),
quickly: after a failure the store does not try again for `retry_interval` seconds, then the
next call probes. One warning is logged when it goes down and one info line when it is back.
The size bound is Redis's (`maxmemory` with `volatile-lru` or `volatile-ttl`): every key has
an expiry, so either policy evicts activations and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Final, TypeVar

import structlog
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from trackd.activation.store import (
    DEFAULT_TTL_SECONDS,
    ActivationStats,
    Keep,
    Lookup,
    Sticky,
)
from trackd.errors import ActivationStoreUnavailable
from trackd.outage import Outage
from trackd.redis_down import REDIS_DOWN

log = structlog.get_logger("trackd.activation")

T = TypeVar("T")

DEFAULT_PREFIX: Final = "trackd:"
_SEP: Final = "\x1f"  # between experiment and variation in the pairs set

# Lua helpers shared by the scripts. Redis 7 replicates a script's effects, so TIME may be
# read before writing: expiry is Redis's clock, the same for every replica.
_PRELUDE: Final = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function live(value)
  if not value then return nil end
  local sp = string.find(value, ' ', 1, true)
  if sp == nil or tonumber(string.sub(value, 1, sp - 1)) <= now then return nil end
  return string.sub(value, sp + 1)
end
local function write(key, pairs, experiment, variation, ttl)
  local pruned = 0
  if redis.call('HLEN', key) > 1 then
    local all = redis.call('HGETALL', key)
    for j = 1, #all, 2 do
      if all[j] ~= experiment and not live(all[j + 1]) then
        redis.call('HDEL', key, all[j])
        pruned = pruned + 1
      end
    end
  end
  redis.call('HSET', key, experiment, string.format('%.0f', now + ttl) .. ' ' .. variation)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
  redis.call('SADD', pairs, experiment .. '\31' .. variation)
  return pruned
end
"""

# KEYS: user; ARGV: experiment. The live variation or nil; never writes.
_GET: Final = (
    _PRELUDE
    + r"""
return live(redis.call('HGET', KEYS[1], ARGV[1]))
"""
)

# KEYS: user, pairs; ARGV: experiment, variation, ttl_ms. Expired fields pruned.
_PUT: Final = (
    _PRELUDE
    + r"""
return write(KEYS[1], KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3]))
"""
)

# KEYS: user, pairs; ARGV: experiment, candidate, has_candidate ('1'/'0'), ttl_ms.
# {1, live variation} after refreshing it; {0, candidate} after storing it; {0} otherwise.
_REFRESH_OR_PUT: Final = (
    _PRELUDE
    + r"""
local ttl = tonumber(ARGV[4])
local variation = live(redis.call('HGET', KEYS[1], ARGV[1]))
if variation then
  write(KEYS[1], KEYS[2], ARGV[1], variation, ttl)
  return {1, variation}
end
if ARGV[3] == '1' then
  write(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ttl)
  return {0, ARGV[2]}
end
return {0}
"""
)

# KEYS: users; ARGV per user: n, then n experiment ids (n = -1: every experiment).
# One flat {experiment, variation, ...} list per user.
_LIVE: Final = (
    _PRELUDE
    + r"""
local out = {}
local a = 1
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[a])
  a = a + 1
  local found = {}
  if n < 0 then
    local all = redis.call('HGETALL', key)
    for j = 1, #all, 2 do
      local variation = live(all[j + 1])
      if variation then
        found[#found + 1] = all[j]
        found[#found + 1] = variation
      end
    end
  elseif n > 0 then
    local values = redis.call('HMGET', key, unpack(ARGV, a, a + n - 1))
    for j = 1, n do
      local variation = live(values[j])
      if variation then
        found[#found + 1] = ARGV[a + j - 1]
        found[#found + 1] = variation
      end
    end
    a = a + n
  end
  out[i] = found
end
return out
"""
)

# KEYS: users; ARGV: dropped "experiment\31variation" pairs. How many fields were deleted.
_RETAIN: Final = r"""
local drop = {}
for _, pair in ipairs(ARGV) do drop[pair] = true end
local removed = 0
for _, key in ipairs(KEYS) do
  local all = redis.call('HGETALL', key)
  for j = 1, #all, 2 do
    if drop[all[j] .. '\31' .. all[j + 1]:match(' (.*)$')] then
      redis.call('HDEL', key, all[j])
      removed = removed + 1
    end
  end
end
return removed
"""


def _pool_exhausted(error: BaseException) -> bool:
    """redis-py's BlockingConnectionPool timing out on a free connection (not Redis failing)."""
    return isinstance(error, redis_errors.ConnectionError) and isinstance(
        error.__cause__, asyncio.TimeoutError | TimeoutError
    )


class RedisActivationStore:
    """`ActivationStore` in Redis, shared by every replica that names the same database.

    Build it with `from_url("redis://host:port/db")` (or pass a client). `max_connections`
    bounds the pool: a call waits up to `pool_timeout` seconds for a free connection, then
    counts as Redis being unavailable. `socket_timeout` bounds one round trip.
    """

    def __init__(
        self,
        client: Redis,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        prefix: str = DEFAULT_PREFIX,
        retry_interval: float = 1.0,
        batch_keys: int = 500,
        scan_count: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, got {ttl!r}")
        if batch_keys < 1 or scan_count < 1:
            raise ValueError("batch_keys and scan_count must be at least 1")
        self._client = client
        self._ttl_ms = max(1, round(ttl * 1000))
        self._prefix = prefix
        self._pairs_key = prefix + "pairs"
        self._batch_keys = batch_keys
        self._scan_count = scan_count
        self._get = client.register_script(_GET)
        self._put = client.register_script(_PUT)
        self._refresh_or_put = client.register_script(_REFRESH_OR_PUT)
        self._live = client.register_script(_LIVE)
        self._retain = client.register_script(_RETAIN)
        self._outage = Outage("activation_store", retry_interval, clock)
        self._hits = 0
        self._misses = 0
        self._expiries = 0
        self._dropped = 0
        self.failures = 0  # calls that found Redis unavailable (fast refusals included)
        self.busy = 0  # calls that found every pooled connection in use

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        max_connections: int = 32,
        pool_timeout: float = 0.5,
        socket_timeout: float = 0.5,
        connect_timeout: float = 0.5,
        **kwargs: Any,
    ) -> RedisActivationStore:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            decode_responses=True,
            # One immediate retry: a pooled connection that a Redis restart broke reconnects
            # transparently; a Redis that is really down is reported at once.
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )
        return cls(Redis(connection_pool=pool), **kwargs)

    @property
    def ttl(self) -> float:
        return self._ttl_ms / 1000

    @property
    def available(self) -> bool:
        """False from a failed call until a later call succeeds."""
        return self._outage.available

    @property
    def outages(self) -> int:
        """Transitions from available to unavailable."""
        return self._outage.outages

    @property
    def client(self) -> Redis:
        return self._client

    def _key(self, user_id: str) -> str:
        return self._prefix + "a:" + user_id

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Runs one round trip, mapping "Redis is down" to ActivationStoreUnavailable."""
        if self._outage.refuses_now():
            self.failures += 1
            raise ActivationStoreUnavailable("the activation store (Redis) is unavailable")
        try:
            result = await operation()
        except REDIS_DOWN as error:
            self.failures += 1
            if _pool_exhausted(error):
                # Every pooled connection is busy: this process is overloaded, Redis is not
                # down, so only this call goes without (no fast-fail window for the others).
                self.busy += 1
                raise ActivationStoreUnavailable(
                    "the activation store's connections are all busy (--redis-max-connections)"
                ) from error
            self._outage.failed(error)
            raise ActivationStoreUnavailable(
                f"the activation store (Redis) is unavailable: {error}"
            ) from error
        self._outage.succeeded()
        return result

    async def _script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        return await self._call(lambda: script(keys=keys, args=args))

    # -- the interface ---------------------------------------------------------------------

    async def ping(self) -> bool:
        """True when Redis answers (and the store counts as available again)."""
        try:
            await self._call(self._client.ping)
        except ActivationStoreUnavailable:
            return False
        return True

    async def get(self, user_id: str, experiment_id: str) -> str | None:
        variation_id: str | None = await self._script(
            self._get, [self._key(user_id)], [experiment_id]
        )
        if variation_id is None:
            self._misses += 1
        else:
            self._hits += 1
        return variation_id

    async def put(self, user_id: str, experiment_id: str, variation_id: str) -> None:
        pruned = await self._script(
            self._put,
            [self._key(user_id), self._pairs_key],
            [experiment_id, variation_id, self._ttl_ms],
        )
        self._expiries += int(pruned)

    async def refresh_or_put(
        self, user_id: str, experiment_id: str, variation_id: str | None
    ) -> Sticky:
        answer = await self._script(
            self._refresh_or_put,
            [self._key(user_id), self._pairs_key],
            [experiment_id, variation_id or "", "0" if variation_id is None else "1", self._ttl_ms],
        )
        if answer[0] == 1:
            self._hits += 1
            return Sticky(answer[1], True)
        self._misses += 1
        return Sticky(answer[1] if len(answer) > 1 else None, False)

    async def live_for_user(
        self, user_id: str, experiment_ids: Collection[str] | None = None
    ) -> dict[str, str]:
        keys, args = self._lookup_args([(user_id, experiment_ids)])
        (flat,) = await self._script(self._live, keys, args)
        return self._found(flat)

    async def live_for_users(self, lookups: Sequence[Lookup]) -> list[dict[str, str]]:
        if not lookups:
            return []
        if len(lookups) <= self._batch_keys:
            keys, args = self._lookup_args(lookups)
            return [self._found(flat) for flat in await self._script(self._live, keys, args)]

        async def pipelined() -> list[Any]:
            # One round trip: raw EVALSHA calls in one pipeline, since a pipeline that holds
            # registered scripts asks SCRIPT EXISTS first, which would be a second.
            chunks = [
                self._lookup_args(lookups[i : i + self._batch_keys])
                for i in range(0, len(lookups), self._batch_keys)
            ]
            for attempt in range(2):
                pipe = self._client.pipeline(transaction=False)
                for keys, args in chunks:
                    pipe.execute_command("EVALSHA", self._live.sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
                if not any(isinstance(r, redis_errors.NoScriptError) for r in replies):
                    break
                if attempt == 0:  # a restarted Redis forgot the script
                    await self._client.script_load(_LIVE)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return [flat for reply in replies for flat in reply]

        return [self._found(flat) for flat in await self._call(pipelined)]

    async def retain(self, keep: Keep) -> int:
        async def members() -> set[str]:
            return {str(pair) for pair in await self._client.smembers(self._pairs_key)}

        async def scan(cursor: int) -> tuple[int, list[str]]:
            cursor, keys = await self._client.scan(cursor, match=match, count=self._scan_count)
            return int(cursor), [str(key) for key in keys]

        match = self._prefix + "a:*"
        pairs = await self._call(members)
        dropped = []
        for pair in pairs:
            experiment_id, _, variation_id = pair.partition(_SEP)
            if not keep(experiment_id, variation_id):
                dropped.append(pair)
        if not dropped:
            return 0
        removed = 0
        cursor = 0
        while True:
            cursor, keys = await self._call(functools.partial(scan, cursor))
            if keys:
                removed += int(await self._script(self._retain, keys, dropped))
            if cursor == 0:
                break
            await asyncio.sleep(0)
        await self._call(lambda: self._client.srem(self._pairs_key, *dropped))
        self._dropped += removed
        log.info("activations_dropped", pairs=len(dropped), activations=removed)
        return removed

    async def purge_expired(self) -> int:
        """Nothing to do: Redis expires a user's hash itself, and writes prune the fields that
        expired inside a live one."""
        return 0

    async def stats(self) -> ActivationStats:
        """Counters of this process's calls; `entries` is the number of users with an
        activation hash, fleet-wide (0 while Redis is unavailable). Never raises."""
        entries = 0
        with contextlib.suppress(ActivationStoreUnavailable):
            entries = int(await self._call(self._client.dbsize))
        return ActivationStats(
            entries=entries,
            hits=self._hits,
            misses=self._misses,
            evictions=0,  # Redis's own: INFO stats evicted_keys
            expiries=self._expiries,
            dropped=self._dropped,
            available=self.available,
        )

    async def close(self) -> None:
        await self._client.aclose()
        await self._client.connection_pool.disconnect()

    # -- internals -------------------------------------------------------------------------

    def _lookup_args(self, lookups: Sequence[Lookup]) -> tuple[list[str], list[Any]]:
        keys: list[str] = []
        args: list[Any] = []
        for user_id, experiment_ids in lookups:
            keys.append(self._key(user_id))
            if experiment_ids is None:
                args.append(-1)
            else:
                args.append(len(experiment_ids))
                args.extend(experiment_ids)
        return keys, args

    def _found(self, flat: list[str]) -> dict[str, str]:
        found = dict(zip(flat[::2], flat[1::2], strict=True))
        if found:
            self._hits += 1
        else:
            self._misses += 1
        return found


__all__ = ["DEFAULT_PREFIX", "ActivationStoreUnavailable", "RedisActivationStore"]
