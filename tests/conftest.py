from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.daemon import Client, client_for, settings_for


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    """A real trackd on 127.0.0.1:0 serving the bundled example datafile."""
    async with client_for(settings_for(tmp_path)) as connected:
        yield connected
