""" "Redis cannot answer now" means the same to every part that talks to Redis: the
activation store and fleet-wide results each turn it into Unavailable (a status the client
may retry), never an internal error."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import exceptions as redis_errors

from trackd.activation.redis import RedisActivationStore
from trackd.errors import Unavailable
from trackd.events.fleet import FleetResults

UNREACHABLE = "redis://127.0.0.1:9/0"  # never connected to: each call below fails first

DOWN = [
    redis_errors.ConnectionError("Connection refused"),
    redis_errors.BusyLoadingError("Redis is loading the dataset in memory"),
    redis_errors.TimeoutError("Timeout reading from socket"),
    redis_errors.ReadOnlyError("You can't write against a read only replica."),
    redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
    redis_errors.ClusterDownError("The cluster is down"),
    redis_errors.TryAgainError("Multiple keys request during rehashing of slot"),
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError(),
]


@pytest.mark.parametrize("error", DOWN, ids=lambda error: type(error).__name__)
async def test_every_part_reads_redis_down_as_unavailable(
    error: BaseException, tmp_path: Path
) -> None:
    async def failing() -> None:
        raise error

    store = RedisActivationStore.from_url(UNREACHABLE)
    fleet = FleetResults(store.client, tmp_path / "outbox.sqlite3")
    try:
        with pytest.raises(Unavailable):
            await store._calls.run(failing)
        with pytest.raises(Unavailable):
            await fleet._redis(failing)
    finally:
        await store.close()
