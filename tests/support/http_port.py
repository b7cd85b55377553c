"""A real daemon's HTTP port (--http-listen) for the tests of Connect and Agent's /v1.

A test module takes the fixtures it needs by importing them under their own names, as
`from tests.support.http_port import client as client`; pytest finds them there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.daemon import Client, client_for, settings_for

SDK_KEY = {"X-Optimizely-SDK-Key": "any-key"}  # no --sdk-key: any key is this datafile's
EXAMPLE = Path(__file__).resolve().parents[2] / "server/trackd/data/example_datafile.json"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    """A real trackd on 127.0.0.1:0 serving the bundled example datafile (experiments, events
    and flags), gRPC and HTTP on ports of their own."""
    async with client_for(settings_for(tmp_path, http_listen="127.0.0.1:0")) as connected:
        yield connected


def agent_http(daemon: Client) -> httpx.AsyncClient:
    """httpx on the daemon's HTTP port, sending the header every Agent API call needs."""
    return httpx.AsyncClient(base_url=daemon.http_url, headers=SDK_KEY, timeout=10)


@pytest.fixture
async def http(client: Client) -> AsyncIterator[httpx.AsyncClient]:
    """`agent_http` on the `client` fixture's daemon."""
    async with agent_http(client) as connected:
        yield connected
