"""Fleet-wide experiment results: every replica's counts summed in Redis.

Each replica already counts its committed events exactly once, in the outbox writer
thread, in the transaction that moves its results cursor (`trackd.events.results`). That
counter hands what one step counted to `FleetResults.observe`, which stores it as one
`fleet_pending` row in the same transaction: the ack path never waits for Redis, and a
crash keeps the local counts and the pending row together or neither.

A publisher task sends each pending row to Redis with a Lua script that applies it only if
its row id is above this replica's cursor (kept in Redis, moved by the same script), so a
row sent twice (a crash between the script and the delete, a timeout that was in fact a
success) is counted once: at-least-once delivery, exactly-once effect per replica.

In Redis, per experiment: a hash `{prefix}r:{experiment_id}` of conversions (HINCRBY),
revenue (HINCRBY) and value (HINCRBYFLOAT) per (variation, event), and per group a
unique-users key. Unique users are HyperLogLogs: 12 KB per group whatever the traffic,
idempotent (adding a user twice changes nothing, like the SQLite members table), with a
standard error of 0.81% (exact in practice for small counts); exact Redis sets would cost
about 60-80 bytes per user per group. Optimizely's results remain the statistics of record;
these are the operational view.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import sqlite3
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import structlog
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from trackd.background import cancel_and_wait
from trackd.config import default_of
from trackd.errors import Unavailable
from trackd.events import results as results_mod
from trackd.events.results import (
    ExperimentResults,
    Group,
    LocalResults,
    RawCounts,
    ResultsConfig,
    ResultsExperiment,
)
from trackd.outage import Outage
from trackd.redis_down import REDIS_DOWN

log = structlog.get_logger("trackd.events")


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS fleet_pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the Redis-side cursor relies on it
    body TEXT NOT NULL                     -- JSON: the groups one results step counted
);
CREATE TABLE IF NOT EXISTS fleet_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# KEYS: the cursors hash. ARGV: replica id, row id, body, prefix.
# body: [[kind, experiment, variation, event, [users], conversions, revenue, value], ...]
# Redis does not undo a script's earlier writes when a later one fails, so no write here may
# fail on a value: integer sums saturate at the int64 bounds (as the SQLite counts clamp), and
# a float sum that would leave the finite range keeps its last value.
_APPLY: Final = r"""
local row = tonumber(ARGV[2])
if row <= tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') then return 0 end
local prefix = ARGV[4]
local function add_int(hash, field, by)
  local r = redis.pcall('HINCRBY', hash, field, by)
  if type(r) == 'table' and r.err then
    local bound = '9223372036854775807'
    if string.sub(by, 1, 1) == '-' then bound = '-9223372036854775808' end
    redis.call('HSET', hash, field, bound)
  end
end
local function add_float(hash, field, by)
  redis.pcall('HINCRBYFLOAT', hash, field, by)
end
for _, g in ipairs(cjson.decode(ARGV[3])) do
  local kind, experiment, variation, event = g[1], g[2], g[3], g[4]
  local users = g[5]
  local hash = prefix .. 'r:' .. experiment
  local ukey = prefix .. 'ru:' .. experiment .. '\31' .. variation .. '\31' .. kind
    .. '\31' .. event
  for i = 1, #users, 1000 do
    redis.call('PFADD', ukey, unpack(users, i, math.min(i + 999, #users)))
  end
  if kind == 0 then
    redis.call('HSETNX', hash, 'v\31' .. variation, '1')
  else
    local field = variation .. '\31' .. event
    add_int(hash, 'n\31' .. field, g[6])
    add_int(hash, 'r\31' .. field, g[7])
    add_float(hash, 'x\31' .. field, g[8])
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS: the experiment's hash. ARGV: prefix, experiment id.
# {{'v', variation, visitors}, {'e', variation, event, converters, conversions, revenue, value}}
_QUERY: Final = r"""
local prefix, experiment = ARGV[1], ARGV[2]
local function users(variation, kind, event)
  local key = prefix .. 'ru:' .. experiment .. '\31' .. variation .. '\31' .. kind .. '\31' .. event
  return redis.call('PFCOUNT', key)
end
local all = redis.call('HGETALL', KEYS[1])
local fields = {}
for j = 1, #all, 2 do fields[all[j]] = all[j + 1] end
local out = {}
for field, _ in pairs(fields) do
  local tag, rest = string.sub(field, 1, 1), string.sub(field, 3)
  if tag == 'v' then
    out[#out + 1] = {'v', rest, users(rest, 0, '')}
  elseif tag == 'n' then
    local sep = string.find(rest, '\31', 1, true)
    local variation, event = string.sub(rest, 1, sep - 1), string.sub(rest, sep + 1)
    out[#out + 1] = {'e', variation, event, users(variation, 1, event), fields[field],
                     fields['r\31' .. rest] or '0', fields['x\31' .. rest] or '0'}
  end
end
return out
"""


class FleetUnavailable(Unavailable):
    """Redis cannot be reached for fleet-wide results."""


def encode(members: Mapping[Group, set[str]], totals: Mapping[Group, Sequence[Any]]) -> str:
    """One results step as the JSON body of a pending row (revenue as a string: it may pass
    2^53, which Lua's cjson would round)."""
    groups: list[list[Any]] = []
    for key, users in members.items():
        experiment_id, variation_id, kind, event_key = key
        conversions, revenue, value = totals.get(key, (0, 0, 0.0))
        groups.append(
            [
                kind,
                experiment_id,
                variation_id,
                event_key,
                sorted(users),
                str(int(conversions)),
                str(results_mod.clamp_int64(int(revenue))),
                repr(float(value)) if math.isfinite(value) else "0.0",
            ]
        )
    return json.dumps(groups, separators=(",", ":"))


class FleetResults:
    """Publishes this replica's counts to Redis and answers results for the whole fleet.

    Wiring: pass `fleet.observe` as the outbox's `results_observer`, `await fleet.start()`
    after the outbox opens, answer GetExperimentResults with `fleet.results(...)`, and
    `await fleet.close()` before the outbox closes.
    """

    def __init__(
        self,
        client: Redis,
        db_path: str | Path,
        *,
        prefix: str = default_of("redis_key_prefix"),
        publish_interval: float = 0.1,
        batch_rows: int = 64,
        retry_interval: float = 1.0,
    ) -> None:
        self._client = client
        self._db_path = Path(db_path)
        self._prefix = prefix
        self._publish_interval = publish_interval
        self._batch_rows = batch_rows
        self._cursors_key = prefix + "rc"
        self._apply = client.register_script(_APPLY)
        self._query = client.register_script(_QUERY)
        self._conn: sqlite3.Connection | None = None
        self._conn_lock = threading.Lock()  # one statement at a time, and none after close
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._published = 0  # the highest pending row id Redis has
        self._deleted = 0
        self._outage = Outage("fleet_results", retry_interval)
        self.replica_id = ""
        self.published_rows = 0
        self.failures = 0
        self.rejected_rows = 0  # rows Redis refused (logged); their counts stay local
        self.fallbacks = 0  # results answered from local counts because Redis was down

    # --- in the outbox writer thread, inside the results transaction ------------------------

    def observe(
        self,
        conn: sqlite3.Connection,
        members: Mapping[Group, set[str]],
        totals: Mapping[Group, Sequence[Any]],
    ) -> None:
        # Every time (a schema lookup, microseconds): a rolled-back step undoes a creation.
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO fleet_pending (body) VALUES (?)", (encode(members, totals),))

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._conn = await asyncio.to_thread(self._open)
        self._task = asyncio.create_task(self._run(), name="trackd-fleet-results")

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._db_path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_SCHEMA)
        conn.execute(
            "INSERT OR IGNORE INTO fleet_meta VALUES ('replica_id', ?)", (uuid.uuid4().hex,)
        )
        (self.replica_id,) = conn.execute(
            "SELECT value FROM fleet_meta WHERE key = 'replica_id'"
        ).fetchone()
        return conn

    async def close(self, last_attempt: float = 1.0) -> None:
        """Stops publishing after one last attempt (within `last_attempt` seconds); what is
        left stays pending in SQLite for the next start."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if self._conn is None:
            return  # never started
        try:
            await asyncio.wait_for(self.flush(), last_attempt)
        except (FleetUnavailable, TimeoutError):
            pass  # left pending for the next start
        except Exception:
            log.exception("fleet_results_publish_failed")
        await asyncio.to_thread(self._close_conn)

    def _close_conn(self) -> None:
        # Under the lock: a cancelled `to_thread` leaves its thread running on the connection
        # (a publish that close() or the last attempt's timeout cut short), and closing the
        # connection under a running statement crashes the process (seen: SIGSEGV).
        with self._conn_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def _run(self) -> None:
        while True:
            try:
                await self.flush()
            except FleetUnavailable:
                pass  # logged once by flush; retried next round
            except Exception:
                log.exception("fleet_results_publish_failed")
            await asyncio.sleep(self._publish_interval)

    # --- publishing -------------------------------------------------------------------------

    async def flush(self) -> int:
        """Sends every pending row to Redis; returns how many were sent."""
        async with self._lock:
            sent = 0
            while True:
                rows = await asyncio.to_thread(self._pending)
                if not rows:
                    break
                for row_id, body in rows:
                    args: list[str | int] = [self.replica_id, row_id, body, self._prefix]
                    try:
                        await self._redis(
                            functools.partial(self._apply, keys=[self._cursors_key], args=args)
                        )
                    except redis_errors.ResponseError as error:
                        # Redis refused the row itself (a key of another type under our
                        # prefix): retrying cannot help and would block every later row. Its
                        # counts stay in this replica's own results.
                        self.rejected_rows += 1
                        log.error("fleet_results_row_rejected", row=row_id, error=str(error))
                    self._published = row_id
                    sent += 1
                if len(rows) < self._batch_rows:
                    break
            self.published_rows += sent
            if self._published > self._deleted:
                await asyncio.to_thread(self._delete, self._published)
                self._deleted = self._published
            return sent

    def _pending(self) -> list[tuple[int, str]]:
        with self._conn_lock:
            assert self._conn is not None
            return self._conn.execute(
                "SELECT id, body FROM fleet_pending WHERE id > ? ORDER BY id LIMIT ?",
                (self._published, self._batch_rows),
            ).fetchall()

    def _delete(self, up_to: int) -> None:
        with self._conn_lock:
            assert self._conn is not None
            self._conn.execute("DELETE FROM fleet_pending WHERE id <= ?", (up_to,))

    async def _redis(self, call: Any) -> Any:
        if self._outage.refuses_now():
            # Answer from local counts at once rather than wait on a connect timeout per call.
            raise FleetUnavailable("fleet results (Redis) are unavailable")
        try:
            result = await call()
        except REDIS_DOWN as error:
            self.failures += 1
            self._outage.failed(error)
            raise FleetUnavailable(f"fleet results (Redis) are unavailable: {error}") from error
        self._outage.succeeded()
        return result

    # --- answering --------------------------------------------------------------------------

    async def raw(self, experiment_id: str) -> RawCounts:
        replies = await self._redis(
            lambda: self._query(
                keys=[self._prefix + "r:" + experiment_id],
                args=[self._prefix, experiment_id],
            )
        )
        visitors: dict[str, int] = {}
        events: dict[tuple[str, str], tuple[int, int, int, float]] = {}
        for reply in replies:
            if reply[0] == "v":
                visitors[reply[1]] = int(reply[2])
            else:
                _, variation_id, event_key, users, conversions, revenue, value = reply
                events[(variation_id, event_key)] = (
                    int(users),
                    int(conversions),
                    int(revenue),
                    float(value),
                )
        return RawCounts(visitors, events)

    async def results(
        self, outbox: LocalResults, config: ResultsConfig, experiment: ResultsExperiment
    ) -> tuple[ExperimentResults, bool]:
        """The fleet's results and True; this replica's own results and False when Redis is
        unavailable. Includes every event this replica committed before the call."""
        local = await outbox.results(config, experiment)  # counts (and queues) all committed
        try:
            await self.flush()
            raw = await self.raw(experiment.id)
        except (FleetUnavailable, redis_errors.ResponseError):
            self.fallbacks += 1
            log.warning("fleet_results_fallback_to_local", experiment=experiment.key)
            return local, False
        return results_mod.assemble(raw, config, experiment), True


__all__ = ["FleetResults", "FleetUnavailable", "encode"]
