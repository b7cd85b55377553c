"""A pytest plugin that keeps the tests' network traffic on loopback, as the project requires.

Python-level connects (`socket.socket.connect`/`connect_ex`, and so `socket.create_connection`,
requests, httpx and asyncio's selector loop) to an address that is not loopback are refused
with `NonLoopbackConnection`, and a name other than `localhost` is refused before it is looked
up. A library may swallow that error (optimizely-sdk's default dispatcher logs and drops
failures), so each refusal is also recorded and fails the test that made it, at teardown.
On uvloop, whose sockets are libuv's, the loop's getaddrinfo, create_connection and
sock_connect are checked the same way. grpc's C core does not go through Python and is not seen.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvloop

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class NonLoopbackConnection(ConnectionRefusedError):
    """A test tried to reach an address off this machine. An OSError, so the caller cleans up
    (closes the socket) as after any refused connection."""


REFUSED: list[str] = []


def _literal(host: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    name = host.decode() if isinstance(host, bytes) else str(host)
    try:
        return ipaddress.ip_address(name.split("%", 1)[0])  # an IPv6 scope id is not part of it
    except ValueError:
        return None


def _is_loopback(host: Any) -> bool:
    """For a connect: a loopback address, or an unspecified one (0.0.0.0 or :: reach this host)."""
    address = _literal(host)
    return address is not None and (address.is_loopback or address.is_unspecified)


def _may_look_up(host: Any) -> bool:
    """For a name lookup: no host (a wildcard, for bind), localhost, or an address literal
    (looking that up sends nothing; a connect to it is checked then). Resolving any other name
    may already ask a DNS server off this host."""
    if host is None or host in ("", b""):
        return True
    name = host.decode() if isinstance(host, bytes) else str(host)
    return name.lower() in _LOCAL_NAMES or _literal(name) is not None


def _refuse(what: str) -> NonLoopbackConnection:
    message = (
        f"{what}: tests may only reach loopback (tests/support/loopback_only.py); "
        "give the code under test a local receiver or an in-memory stand-in"
    )
    REFUSED.append(message)
    return NonLoopbackConnection(message)


def _checked_connect(original: Callable[..., Any]) -> Callable[..., Any]:
    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise _refuse(f"connect to {address!r}")
        return original(self, address)

    return connect


def _checked_getaddrinfo(original: Callable[..., Any]) -> Callable[..., Any]:
    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _may_look_up(host):
            raise _refuse(f"name lookup of {host!r}")
        return original(host, *args, **kwargs)

    return getaddrinfo


def _checked_loop_getaddrinfo(original: Callable[..., Any]) -> Callable[..., Any]:
    async def getaddrinfo(self: Any, host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _may_look_up(host):
            raise _refuse(f"name lookup of {host!r}")
        return await original(self, host, *args, **kwargs)

    return getaddrinfo


def _checked_loop_connection(original: Callable[..., Any]) -> Callable[..., Any]:
    async def create_connection(
        self: Any, protocol_factory: Any, host: Any = None, port: Any = None, **kwargs: Any
    ) -> Any:
        if host is not None and not _may_look_up(host):
            raise _refuse(f"name lookup of {host!r}")
        if host is not None and _literal(host) is not None and not _is_loopback(host):
            raise _refuse(f"connect to {(host, port)!r}")
        return await original(self, protocol_factory, host, port, **kwargs)

    return create_connection


def _checked_loop_sock_connect(original: Callable[..., Any]) -> Callable[..., Any]:
    async def sock_connect(self: Any, sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise _refuse(f"connect to {address!r}")
        return await original(self, sock, address)

    return sock_connect


def pytest_configure(config: pytest.Config) -> None:
    """Installed for the whole session, so session fixtures and threads are held to it too."""
    socket.socket.connect = _checked_connect(socket.socket.connect)  # type: ignore[method-assign]
    socket.socket.connect_ex = _checked_connect(socket.socket.connect_ex)  # type: ignore[method-assign]
    socket.getaddrinfo = _checked_getaddrinfo(socket.getaddrinfo)
    # Async tests run on uvloop, whose lookups and connects are libuv's, not Python sockets':
    # its loop's own methods are checked instead (create_connection resolves in C, so it
    # checks the name itself).
    loop = uvloop.Loop
    loop.getaddrinfo = _checked_loop_getaddrinfo(loop.getaddrinfo)  # type: ignore[method-assign]
    loop.create_connection = _checked_loop_connection(loop.create_connection)  # type: ignore[method-assign]
    loop.sock_connect = _checked_loop_sock_connect(loop.sock_connect)  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def refused_connections() -> Iterator[list[str]]:
    """The refusals made during this test; any left at its end fail it. A test that provokes
    one on purpose clears the list once it has checked it. One made between tests (by a
    thread) fails the next."""
    yield REFUSED
    if REFUSED:
        refused, REFUSED[:] = list(REFUSED), []
        pytest.fail("reached off loopback:\n" + "\n".join(refused), pytrace=False)
