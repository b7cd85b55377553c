from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis_server import RedisServer, redis_server


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for a test module; each test flushes or prefixes what it uses."""
    with redis_server(tmp_path_factory.mktemp("redis")) as running:
        yield running
