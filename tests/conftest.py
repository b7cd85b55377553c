from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest

from tests.support.daemon import Client, client_for, settings_for
from trackd.config import default_of
from trackd.event_loop import loop_factory

# Every test's Python-level network traffic stays on loopback, or the test fails.
pytest_plugins = ("tests.support.loopback_only",)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    """A real trackd on 127.0.0.1:0 serving the bundled example datafile."""
    async with client_for(settings_for(tmp_path)) as connected:
        yield connected


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]] | None:
    """Async tests run on the loop the daemon runs on by default (`--event-loop auto`), so the
    in-process daemons under test see what production sees."""
    factory = loop_factory(default_of("event_loop"))
    # pytest-asyncio refuses an empty answer: asyncio's own loop when uvloop is not there.
    return {"uvloop": factory} if factory else {"asyncio": asyncio.new_event_loop}
