"""A loopback TCP proxy in front of a redis-server that holds each reply `delay` seconds (a
network hop, on one machine) and counts round trips as the client lived them.

A round is a request that reaches the proxy while no request on any connection awaits its
reply: requests sent together (on several connections, or pipelined on one) are one round;
a request sent after the reply to the one before is another. So a client that awaits two
reads in turn shows two rounds, one that sends them together shows one, whatever the delay
(the delay only keeps the first reply back until the second request has surely arrived).

It runs in the caller's event loop: `async with RedisProxy(port) as proxy`, then point the
client at `proxy.url`.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class RedisProxy:
    def __init__(self, upstream_port: int, *, delay: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self.rounds = 0
        self.requests = 0
        self._waiting: set[int] = set()  # connections with a request not yet answered
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._connections = 0

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> RedisProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for pump in list(self._pumps):
            pump.cancel()
        for pump in list(self._pumps):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await pump
        await self._server.wait_closed()

    def reset(self) -> None:
        """Counts from zero (the connections and what they wait for stay as they are)."""
        self.rounds = 0
        self.requests = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        connection = self._connections
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        requests = asyncio.create_task(self._requests(connection, reader, up_writer))
        replies = asyncio.create_task(self._replies(connection, up_reader, writer))
        self._pumps |= {requests, replies}
        try:
            await asyncio.wait({requests, replies}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in (requests, replies):
                pump.cancel()
                self._pumps.discard(pump)
            self._waiting.discard(connection)
            for end in (writer, up_writer):
                end.close()

    async def _requests(
        self, connection: int, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter
    ) -> None:
        while chunk := await reader.read(65536):
            if not self._waiting:
                self.rounds += 1
            self.requests += 1
            self._waiting.add(connection)
            upstream.write(chunk)
            await upstream.drain()

    async def _replies(
        self, connection: int, upstream: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # One reply at a time per connection, each held `delay`: the clients here wait for a
        # reply before their next request on the same connection.
        while chunk := await upstream.read(65536):
            if self.delay:
                await asyncio.sleep(self.delay)
            self._waiting.discard(connection)  # before the client can send its next request
            writer.write(chunk)
            await writer.drain()
