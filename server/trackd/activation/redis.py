"""The shared activation store: Redis, so every replica and worker sees the same activations.

Layout: one hash per user, `{prefix}a:{user_id}`, field = experiment id, value =
`"{expiry_ms} {variation_id}"`, expiry in Redis server time (every replica reads the same
clock), negated when the activation is not sticky (`Held.sticky`). A sign rather than a
third token: an older trackd sharing the Redis during a rolling upgrade reads such a value as
expired instead of failing its script on it. Values written before the flag existed mark a
non-sticky activation with a NUL before the variation id; they are read the same way.

The key's own PEXPIRE is set to the TTL on every write, so a user's hash vanishes TTL after
their last Activate, and Redis reclaims it without any scan of ours; an expired field inside
a live hash is invisible (the scripts compare its expiry) and pruned by the next write to
that hash. Why a hash per user rather than a key per (user, experiment): Track
for an event that belongs to every experiment needs all of a user's activations, which is
one HGETALL here and a SCAN or an index there; and a user's few experiments pack into one
small listpack.

Every call is one round trip: a Lua script (EVALSHA; re-sent as a whole after a Redis
restart emptied its script cache). A Decide's feature tests are one `put_many` script (25
entries of a new user: 0.36 ms on loopback, 4.4 ms as 25 puts). A TrackStream batch is one
pipeline of scripts of at most `batch_keys` users each, so a 10,000-event batch never holds
Redis for long.

`retain` finds the (experiment, variation) pairs ever written in the set `{prefix}pairs`
(SADD on every write, in the same script), asks `keep`, and if any pair is dropped, SCANs the
user hashes in chunks off the request path, deleting the dropped fields, at most
`retain_scans_per_second` SCANs a second; the daemon is SERVING before it starts.

Redis down: every method raises `ActivationStoreUnavailable` (a `trackd.errors.Unavailable`),
quickly: after a failure the store does not try again for `retry_interval` seconds, then the
next call probes. One warning is logged when it goes down and one info line when it is back.
The size bound is Redis's (`maxmemory` with `volatile-lru` or `volatile-ttl`): every key has
an expiry, so either policy evicts activations and nothing else.

`stats().entries` counts this deployment's activations only: the fields of the
`{prefix}a:*` hashes, not DBSIZE (which also counts the pairs set, the fleet results and any
other deployment sharing the database). Redis keeps no count per key pattern, and a counter
kept by the scripts could not see Redis expiring a hash, so the count is a SCAN with MATCH,
chunk by chunk, each chunk's keys summed by one HLEN script, off the request path. Measured
here (2 busy shared cores, redis-server 7.0, 100,000 users of 2 activations beside 100,000
foreign keys): each SCAN COUNT 1000 and each HLEN script held Redis 0.5 ms, a whole count
took 1 s of wall time and 0.6 s of Redis time in 400 commands (about 3 us of Redis per key
in the database). Cheap per command but linear in the database, so the fleet counts once per
`count_interval` (60 s), not each replica at each scrape: `stats()` starts a background
refresh when its figure is that old and never waits; the refresh either wins
`{prefix}count:lock` (SET NX PX) and counts, publishing `{prefix}count`, or reads the
figure another replica published.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from typing import Any, Final

import structlog
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from trackd.activation.store import (
    DEFAULT_TTL_SECONDS,
    ActivationStats,
    Held,
    Keep,
    Lookup,
    Sticky,
    Write,
)
from trackd.errors import ActivationStoreUnavailable
from trackd.outage import Outage
from trackd.redis_calls import LIVE_FIELDS, NOW, RedisCalls

log = structlog.get_logger("trackd.activation")

DEFAULT_PREFIX: Final = "trackd:"
_SEP: Final = "\x1f"  # between experiment and variation in the pairs set
# Before `Held.sticky`, a non-sticky activation was its variation id behind a NUL, in the
# hashes and in the pairs set; such values are still read (see _DECODE).
_OLD_NOT_STICKY: Final = "\x00"

# A stored value as (expiry_ms, variation, sticky), or nil: shared by every script.
_DECODE: Final = r"""
local function decode(value)
  if not value then return nil end
  local sp = string.find(value, ' ', 1, true)
  if sp == nil then return nil end
  local expiry = tonumber(string.sub(value, 1, sp - 1))
  if expiry == nil then return nil end
  local variation = string.sub(value, sp + 1)
  if expiry < 0 then return -expiry, variation, false end
  if string.byte(variation, 1) == 0 then return expiry, string.sub(variation, 2), false end
  return expiry, variation, true
end
"""

# Lua helpers shared by the scripts: expiry is Redis's clock (NOW), the same for every replica.
_PRELUDE: Final = (
    _DECODE
    + NOW
    + r"""
local function live(value)
  local expiry, variation, sticky = decode(value)
  if expiry == nil or expiry <= now then return nil end
  return variation, sticky
end
local function prune(key, experiment)
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
  return pruned
end
local function store(key, pairs, experiment, variation, sticky, ttl)
  local expiry = string.format('%.0f', now + ttl)
  if not sticky then expiry = '-' .. expiry end
  redis.call('HSET', key, experiment, expiry .. ' ' .. variation)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
  redis.call('SADD', pairs, experiment .. '\31' .. variation)
end
local function write(key, pairs, experiment, variation, sticky, ttl)
  local pruned = prune(key, experiment)
  store(key, pairs, experiment, variation, sticky, ttl)
  return pruned
end
"""
)

# KEYS: user; ARGV: experiment. {live variation, sticky (1/0)} or nil; never writes.
_GET: Final = (
    _PRELUDE
    + r"""
local variation, sticky = live(redis.call('HGET', KEYS[1], ARGV[1]))
if variation == nil then return nil end
return {variation, sticky and 1 or 0}
"""
)

# KEYS: user, pairs; ARGV: experiment, variation, sticky ('1'/'0'), ttl_ms. Expired fields
# pruned.
_PUT: Final = (
    _PRELUDE
    + r"""
return write(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3] == '1', tonumber(ARGV[4]))
"""
)

# KEYS: user, pairs; ARGV: ttl_ms, then experiment, variation, sticky ('1'/'0') per entry.
# As _PUT of each entry in turn; how many expired fields were pruned. `now` is read once per
# script, so once two entries are written every field is live (the first write prunes all but
# its own field when the hash holds two or more; when it held one, the second write sees two):
# the later writes would prune nothing, and skip the HGETALL that finds so (25 entries of a
# new user: 2 HGETALLs of up to 2 fields instead of 24 of up to 25).
_PUT_MANY: Final = (
    _PRELUDE
    + r"""
local ttl = tonumber(ARGV[1])
local pruned = 0
for a = 2, #ARGV, 3 do
  if a <= 5 then pruned = pruned + prune(KEYS[1], ARGV[a]) end  -- the first two entries
  store(KEYS[1], KEYS[2], ARGV[a], ARGV[a + 1], ARGV[a + 2] == '1', ttl)
end
return pruned
"""
)

# KEYS: user, pairs; ARGV: experiment, candidate, has_candidate ('1'/'0'), ttl_ms.
# {1, live variation} after refreshing a sticky one; {0, candidate} after storing it;
# {0} otherwise.
_REFRESH_OR_PUT: Final = (
    _PRELUDE
    + r"""
local ttl = tonumber(ARGV[4])
local variation, sticky = live(redis.call('HGET', KEYS[1], ARGV[1]))
if variation and sticky then
  write(KEYS[1], KEYS[2], ARGV[1], variation, true, ttl)
  return {1, variation}
end
if ARGV[3] == '1' then
  write(KEYS[1], KEYS[2], ARGV[1], ARGV[2], true, ttl)
  return {0, ARGV[2]}
end
return {0}
"""
)

# KEYS: users; ARGV per user: n, then n experiment ids (n = -1: every experiment).
# One flat {experiment, variation, ...} list per user.
_LIVE: Final = (
    _PRELUDE
    + LIVE_FIELDS
    + r"""
local out = {}
local a = 1
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[a])
  a = a + 1
  local found = {}
  if n < 0 then
    found = live_fields(key)
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

# KEYS: user; ARGV: experiment ids (at least one). A flat {experiment, variation, sticky
# (1/0), ...} of the live ones; never writes. `_GET` of each, in one round trip.
_HELD: Final = (
    _PRELUDE
    + r"""
local values = redis.call('HMGET', KEYS[1], unpack(ARGV))
local found = {}
for j = 1, #ARGV do
  local variation, sticky = live(values[j])
  if variation then
    found[#found + 1] = ARGV[j]
    found[#found + 1] = variation
    found[#found + 1] = sticky and 1 or 0
  end
end
return found
"""
)

# KEYS: users; ARGV: dropped "experiment\31variation" pairs. How many fields were deleted.
_RETAIN: Final = (
    _DECODE
    + r"""
local drop = {}
for _, pair in ipairs(ARGV) do drop[pair] = true end
local removed = 0
for _, key in ipairs(KEYS) do
  local all = redis.call('HGETALL', key)
  for j = 1, #all, 2 do
    local _, variation = decode(all[j + 1])
    if variation and drop[all[j] .. '\31' .. variation] then
      redis.call('HDEL', key, all[j])
      removed = removed + 1
    end
  end
end
return removed
"""
)


# KEYS: users. How many fields (activations, expired ones not yet pruned included) they hold.
_COUNT: Final = r"""
local n = 0
for _, key in ipairs(KEYS) do n = n + redis.call('HLEN', key) end
return n
"""


def _glob_escape(text: str) -> str:
    """`text` as a literal in a SCAN MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisActivationStore:
    """`ActivationStore` in Redis, shared by every replica that names the same database.

    Build it with `from_url("redis://host:port/db")` (or pass a client). `max_connections`
    bounds the pool: a call waits up to `pool_timeout` seconds for a free connection, then
    counts as Redis being unavailable. `socket_timeout` bounds one round trip.
    """

    remote = True  # every call is a round trip: the tracker overlaps independent reads

    def __init__(
        self,
        client: Redis,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        prefix: str = DEFAULT_PREFIX,
        retry_interval: float = 1.0,
        batch_keys: int = 500,
        scan_count: int = 1000,
        count_interval: float = 60.0,
        retain_scans_per_second: float = 100.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, got {ttl!r}")
        if batch_keys < 1 or scan_count < 1:
            raise ValueError("batch_keys and scan_count must be at least 1")
        if not retain_scans_per_second > 0:
            raise ValueError(
                f"retain_scans_per_second must be positive, got {retain_scans_per_second!r}"
            )
        self._client = client
        self._ttl_ms = max(1, round(ttl * 1000))
        self._prefix = prefix
        self._pairs_key = prefix + "pairs"
        self._batch_keys = batch_keys
        self._scan_count = scan_count
        self._get = client.register_script(_GET)
        self._put = client.register_script(_PUT)
        self._put_many = client.register_script(_PUT_MANY)
        self._refresh_or_put = client.register_script(_REFRESH_OR_PUT)
        self._live = client.register_script(_LIVE)
        self._held = client.register_script(_HELD)
        self._retain = client.register_script(_RETAIN)
        self._count = client.register_script(_COUNT)
        self._count_interval = count_interval
        self._count_key = prefix + "count"
        self._count_lock_key = prefix + "count:lock"
        self._counted: int | None = None  # the fleet's figure, as last counted or read
        self._counted_at = -math.inf  # `clock` time the last refresh started
        self._counting: asyncio.Task[None] | None = None
        self.counts = 0  # counts this process ran (the others read the fleet's figure)
        self._clock = clock
        # retain's SCAN steps are paced: each (a SCAN COUNT 1000 and its script) held Redis
        # about 1 ms here (module docstring), so 100 a second keep a drop after a datafile
        # change under a tenth of Redis's time, however many users it walks over.
        self._retain_pause = 1.0 / retain_scans_per_second
        self._sleep = sleep
        self._outage = Outage("activation_store", retry_interval, clock)
        self._calls = RedisCalls("activation store", ActivationStoreUnavailable, self._outage)
        self._hits = 0
        self._misses = 0
        self._expiries = 0
        self._dropped = 0

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
    def failures(self) -> int:
        """Calls that found Redis unavailable (fast refusals included)."""
        return self._calls.failures

    @property
    def busy(self) -> int:
        """Calls that found every pooled connection in use."""
        return self._calls.busy

    @property
    def client(self) -> Redis:
        return self._client

    def _key(self, user_id: str) -> str:
        return self._prefix + "a:" + user_id

    # -- the interface ---------------------------------------------------------------------

    async def ping(self) -> bool:
        """True when Redis answers (and the store counts as available again)."""
        try:
            await self._calls.run(self._client.ping)
        except ActivationStoreUnavailable:
            return False
        return True

    async def get(self, user_id: str, experiment_id: str) -> Held | None:
        answer = await self._calls.script(self._get, [self._key(user_id)], [experiment_id])
        if answer is None:
            self._misses += 1
            return None
        self._hits += 1
        return Held(answer[0], answer[1] == 1)

    async def put(
        self, user_id: str, experiment_id: str, variation_id: str, *, sticky: bool = True
    ) -> None:
        pruned = await self._calls.script(
            self._put,
            [self._key(user_id), self._pairs_key],
            [experiment_id, variation_id, "1" if sticky else "0", self._ttl_ms],
        )
        self._expiries += int(pruned)

    async def put_many(self, user_id: str, entries: Sequence[Write]) -> None:
        if not entries:
            return
        args: list[Any] = [self._ttl_ms]
        for entry in entries:
            args += (entry.experiment_id, entry.variation_id, "1" if entry.sticky else "0")
        keys = [self._key(user_id), self._pairs_key]
        pruned = await self._calls.script(self._put_many, keys, args)
        self._expiries += int(pruned)

    async def refresh_or_put(
        self, user_id: str, experiment_id: str, variation_id: str | None
    ) -> Sticky:
        answer = await self._calls.script(
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
        (flat,) = await self._calls.script(self._live, keys, args)
        return self._found(flat)

    async def live_for_users(self, lookups: Sequence[Lookup]) -> list[dict[str, str]]:
        if not lookups:
            return []
        if len(lookups) <= self._batch_keys:
            keys, args = self._lookup_args(lookups)
            return [self._found(flat) for flat in await self._calls.script(self._live, keys, args)]

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

        return [self._found(flat) for flat in await self._calls.run(pipelined)]

    async def held_for_user(self, user_id: str, experiment_ids: Collection[str]) -> dict[str, Held]:
        if not experiment_ids:  # HMGET needs a field; nothing to ask, so no round trip
            self._misses += 1
            return {}
        flat = await self._calls.script(self._held, [self._key(user_id)], list(experiment_ids))
        found = {flat[j]: Held(flat[j + 1], flat[j + 2] == 1) for j in range(0, len(flat), 3)}
        if found:
            self._hits += 1
        else:
            self._misses += 1
        return found

    async def retain(self, keep: Keep) -> int:
        async def members() -> set[str]:
            return {str(pair) for pair in await self._client.smembers(self._pairs_key)}

        members_held = await self._calls.run(members)
        dropped: set[str] = set()  # as _RETAIN decodes them: no NUL
        dropped_members = []
        for member in members_held:
            experiment_id, _, variation_id = member.partition(_SEP)
            variation_id = variation_id.removeprefix(_OLD_NOT_STICKY)
            if not keep(experiment_id, variation_id):
                dropped.add(experiment_id + _SEP + variation_id)
                dropped_members.append(member)
        if not dropped:
            return 0
        removed = 0
        dropped_pairs = sorted(dropped)
        async for keys in self._user_keys(pause=self._retain_pause):
            removed += int(await self._calls.script(self._retain, keys, dropped_pairs))
        await self._calls.run(lambda: self._client.srem(self._pairs_key, *dropped_members))
        self._dropped += removed
        log.info("store_pairs_dropped", pairs=len(dropped), activations=removed)
        return removed

    async def purge_expired(self) -> int:
        """Nothing to do: Redis expires a user's hash itself, and writes prune the fields that
        expired inside a live one."""
        return 0

    async def stats(self) -> ActivationStats:
        """Counters of this process's calls; `entries` is this deployment's activations,
        fleet-wide, as last counted (see the module docstring: a refresh starts in the
        background when the figure is `count_interval` old), 0 before the first and while
        Redis is unavailable. Never raises, never waits for Redis."""
        if self._counting is None and self._clock() - self._counted_at >= self._count_interval:
            self._counted_at = self._clock()
            self._counting = asyncio.create_task(self._recount(), name="trackd-activation-count")
        entries = self._counted if self._counted is not None and self.available else 0
        return ActivationStats(
            entries=entries,
            hits=self._hits,
            misses=self._misses,
            evictions=0,  # Redis's own: INFO stats evicted_keys
            expiries=self._expiries,
            dropped=self._dropped,
            available=self.available,
        )

    async def count_activations(self) -> int:
        """This deployment's activations, counted now: SCAN of its user hashes, chunk by
        chunk (each chunk one SCAN and one HLEN script), yielding between them."""
        total = 0
        async for keys in self._user_keys():
            total += int(await self._calls.script(self._count, keys, []))
        return total

    async def close(self) -> None:
        if self._counting is not None:
            self._counting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._counting
        await self._client.aclose()
        await self._client.connection_pool.disconnect()

    # -- internals -------------------------------------------------------------------------

    async def _recount(self) -> None:
        try:
            counted = await self._fleet_count()
            if counted is None:  # another replica is counting: ask again at the next stats()
                self._counted_at = -math.inf
            else:
                self._counted = counted
        except ActivationStoreUnavailable:
            pass  # logged by the outage; the next stats() after count_interval tries again
        except Exception:
            log.exception("activation_count_failed")
        finally:
            self._counting = None

    async def _fleet_count(self) -> int | None:
        """Counts if no replica did within `count_interval` (then publishes the figure for
        the others), else reads the figure published."""
        interval_ms = max(1, round(self._count_interval * 1000))

        async def claim() -> bool:
            return bool(await self._client.set(self._count_lock_key, "1", nx=True, px=interval_ms))

        async def published() -> int | None:
            value = await self._client.get(self._count_key)
            return None if value is None else int(value)

        if not await self._calls.run(claim):
            return await self._calls.run(published)
        self.counts += 1
        counted = await self.count_activations()
        # Kept a few intervals, so a replica that read it survives a counter's crash.
        expiry_ms = 3 * interval_ms
        await self._calls.run(lambda: self._client.set(self._count_key, counted, px=expiry_ms))
        return counted

    async def _user_keys(self, pause: float = 0.0) -> AsyncIterator[list[str]]:
        """This deployment's user hashes, a SCAN chunk at a time (chunks may be empty ones
        skipped, and may repeat a key, as SCAN may), `pause` seconds between SCANs."""
        match = _glob_escape(self._prefix) + "a:*"
        cursor = 0
        while True:

            async def scan(at: int = cursor) -> tuple[int, list[str]]:
                found, keys = await self._client.scan(at, match=match, count=self._scan_count)
                return int(found), [str(key) for key in keys]

            cursor, keys = await self._calls.run(scan)
            if keys:
                yield keys
            if cursor == 0:
                return
            await (self._sleep(pause) if pause else asyncio.sleep(0))

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
