"""What "Redis cannot answer now" is, for every part that talks to Redis (the activation
store, the override store, fleet-wide results): one list, so a failover or a full Redis
reads the same to each, and one test for a busy pool, which is not Redis down."""

from __future__ import annotations

import asyncio
from typing import Final

from redis import exceptions as redis_errors

# Each of these means Redis (or the way to it) is down, busy or refusing writes for now, not
# that this code has a bug: the caller answers UNAVAILABLE and the outage window fast-fails
# further calls. A ResponseError outside this list (a key of the wrong type, a script error)
# is not an outage and goes up as it is.
REDIS_DOWN: Final[tuple[type[BaseException], ...]] = (
    redis_errors.ConnectionError,  # refused, reset, pool exhausted, loading the dataset
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,  # a replica promoted late, or a failover in progress
    redis_errors.OutOfMemoryError,  # maxmemory with noeviction
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,  # a cluster slot migrating
    OSError,  # the socket itself (TimeoutError included)
    asyncio.TimeoutError,
)


def pool_exhausted(error: BaseException) -> bool:
    """redis-py's BlockingConnectionPool timing out on a free connection: this process is
    overloaded, Redis is not down, so only that call goes without (no fast-fail window)."""
    return isinstance(error, redis_errors.ConnectionError) and isinstance(
        error.__cause__, asyncio.TimeoutError | TimeoutError
    )


__all__ = ["REDIS_DOWN", "pool_exhausted"]
