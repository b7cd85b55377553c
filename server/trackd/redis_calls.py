"""What the two Redis stores (activations, overrides) share in talking to Redis: one guarded
round trip and two pieces of Lua.

`RedisCalls.run` turns "Redis cannot answer now" (`trackd.redis_down`) into the store's own
`Unavailable` error and keeps its outage window (`trackd.outage`): while Redis is down a call
is refused at once. A pool with every connection busy fails that call alone, opening no
window: this process is overloaded, Redis is not down.

`NOW` and `LIVE_FIELDS` are the Lua both stores' scripts are built from: Redis's clock (the
same for every replica), and a user hash's live fields as read by the script's own `live`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from redis.commands.core import AsyncScript

from trackd.errors import Unavailable
from trackd.outage import Outage
from trackd.redis_down import REDIS_DOWN, pool_exhausted

T = TypeVar("T")

# `now`, in ms of Redis's clock. Redis 7 replicates a script's effects, so TIME may be read
# before writing.
NOW: Final = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# `live_fields(key)`: the hash's live fields as a flat {field, value, ...}, each value as the
# script's `live(value)` gives it (nil: expired). After `live`, which it calls.
LIVE_FIELDS: Final = r"""
local function live_fields(key)
  local all = redis.call('HGETALL', key)
  local found = {}
  for j = 1, #all, 2 do
    local value = live(all[j + 1])
    if value then
      found[#found + 1] = all[j]
      found[#found + 1] = value
    end
  end
  return found
end
"""


class RedisCalls:
    """One store's round trips: `store` names it in errors ("activation store"),
    `unavailable` is the error its callers catch."""

    def __init__(
        self, store: str, unavailable: Callable[[str], Unavailable], outage: Outage
    ) -> None:
        self._store = store
        self._unavailable = unavailable
        self._outage = outage
        self.failures = 0  # calls that found Redis unavailable (fast refusals included)
        self.busy = 0  # calls that found every pooled connection in use

    async def run(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Runs one round trip, mapping "Redis is down" to the store's `unavailable`."""
        if self._outage.refuses_now():
            self.failures += 1
            raise self._unavailable(f"the {self._store} (Redis) is unavailable")
        try:
            result = await operation()
        except REDIS_DOWN as error:
            self.failures += 1
            if pool_exhausted(error):
                # Only this call goes without: no fast-fail window for the others.
                self.busy += 1
                raise self._unavailable(
                    f"the {self._store}'s connections are all busy (--redis-max-connections)"
                ) from error
            self._outage.failed(error)
            raise self._unavailable(f"the {self._store} (Redis) is unavailable: {error}") from error
        self._outage.succeeded()
        return result

    async def script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """Runs a registered script (EVALSHA, re-sent whole to a Redis that forgot it)."""
        return await self.run(lambda: script(keys=keys, args=args))


__all__ = ["LIVE_FIELDS", "NOW", "RedisCalls"]
