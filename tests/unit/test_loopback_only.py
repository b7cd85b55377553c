"""The tests' own network guard (tests/support/loopback_only.py): off-loopback is refused."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.loopback_only import NonLoopbackConnection

ROOT = Path(__file__).resolve().parents[2]
TEST_NET = "192.0.2.1"  # TEST-NET-1 (RFC 5737): never routed, so nothing real is ever reached


def test_a_connect_off_loopback_is_refused_by_the_guard_and_recorded(
    refused_connections: list[str],
) -> None:
    with pytest.raises(NonLoopbackConnection, match=r"connect to \('192\.0\.2\.1', 80\).*loopback"):
        socket.create_connection((TEST_NET, 80), timeout=1)
    with socket.socket() as sock, pytest.raises(NonLoopbackConnection):
        sock.connect_ex((TEST_NET, 443))
    assert len(refused_connections) == 2  # what fails the test at teardown if swallowed
    refused_connections.clear()


def test_a_name_lookup_off_loopback_is_refused_before_it_resolves(
    refused_connections: list[str],
) -> None:
    with pytest.raises(NonLoopbackConnection, match=r"name lookup of 'logx\.optimizely\.com'"):
        socket.getaddrinfo("logx.optimizely.com", 443)
    refused_connections.clear()


def test_an_http_client_off_loopback_is_refused(refused_connections: list[str]) -> None:
    with pytest.raises(httpx.ConnectError, match="tests may only reach loopback"):
        httpx.get(f"http://{TEST_NET}/", timeout=1)
    refused_connections.clear()


async def test_asyncio_connections_off_loopback_are_refused(
    refused_connections: list[str],
) -> None:
    with pytest.raises(NonLoopbackConnection):
        await asyncio.open_connection("logx.optimizely.com", 443)
    refused_connections.clear()


def test_loopback_connections_pass_the_guard() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("localhost", port), timeout=1):
            pass
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass


async def test_asyncio_connects_to_an_address_off_loopback_are_refused(
    refused_connections: list[str],
) -> None:
    with pytest.raises(NonLoopbackConnection, match=r"connect to \('192\.0\.2\.1', 443\)"):
        await asyncio.open_connection(TEST_NET, 443)
    refused_connections.clear()


async def test_an_async_http_client_off_loopback_is_refused(
    refused_connections: list[str],
) -> None:
    """anyio words the error its own way; the recorded refusal is what fails the test."""
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://{TEST_NET}/", timeout=1)
    assert [refusal.split(":")[0] for refusal in refused_connections] == [
        "connect to ('192.0.2.1', 80)"
    ]
    refused_connections.clear()


def test_a_refusal_the_code_under_test_swallows_still_fails_its_test(tmp_path: Path) -> None:
    """As optimizely-sdk's default dispatcher does: it catches the error and logs it."""
    (tmp_path / "test_swallows.py").write_text(
        "import socket\n"
        "def test_swallows():\n"
        "    try:\n"
        f"        socket.create_connection(({TEST_NET!r}, 80), timeout=1)\n"
        "    except OSError:\n"
        "        pass\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.support.loopback_only",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_swallows.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    assert "reached off loopback:\nconnect to ('192.0.2.1', 80)" in result.stdout
