"""A local stand-in for the Optimizely Event API: a tiny HTTP/1.1 server on 127.0.0.1:0.

    async with Receiver() as receiver:
        receiver.script(500, Reply(429, {"Retry-After": "1"}), 200)  # then the default (200)
        ... point trackd at receiver.url ...
        await receiver.wait_for_events(10)
        receiver.received   # parsed JSON bodies it answered with a 2xx, in order
        receiver.requests   # every request, with the status it got
        receiver.max_in_flight  # most requests it held unanswered at once

Scripted replies are used in order, one per request, then `default` answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds to wait before answering
    drop: bool = False  # close the connection without answering: a network error


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # lower-cased names
    body: bytes
    status: int | None  # what it was answered with; None when dropped

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(
        self,
        default: Reply | int = 200,
        path: str = "/v1/events",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.tls = tls  # a server context: answers https:// instead of http://
        self.default = default if isinstance(default, Reply) else Reply(default)
        self.path = path
        self.requests: list[Request] = []
        self.received: list[Any] = []
        self._script: deque[Reply] = deque()
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Condition()
        self._writers: set[asyncio.StreamWriter] = set()
        self.url = ""
        self.in_flight = 0  # requests read and not yet answered
        self.connections = 0  # accepted so far
        self.max_in_flight = 0

    def script(self, *replies: Reply | int) -> None:
        """Queues replies for the next requests, in order."""
        self._script.extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    @property
    def visitors(self) -> list[Any]:
        """Every visitor of every accepted batch, in order."""
        return [visitor for batch in self.received for visitor in batch["visitors"]]

    @property
    def event_uuids(self) -> list[str]:
        return [
            event["uuid"]
            for visitor in self.visitors
            for snapshot in visitor["snapshots"]
            for event in snapshot["events"]
        ]

    async def wait_until(self, predicate: Callable[[Receiver], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def wait_for_events(self, count: int, within: float = 10.0) -> None:
        """Waits until accepted batches hold at least `count` visitors (one event each)."""
        await self.wait_until(lambda r: len(r.visitors) >= count, within)

    async def wait_for_requests(self, count: int, within: float = 10.0) -> None:
        await self.wait_until(lambda r: len(r.requests) >= count, within)

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        host, port = self._server.sockets[0].getsockname()[:2]
        scheme = "http" if self.tls is None else "https"
        self.url = f"{scheme}://{host}:{port}{self.path}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _record(self, request: Request) -> None:
        async with self._changed:
            self.requests.append(request)
            if request.status is not None and 200 <= request.status < 300:
                self.received.append(request.json())
            self._changed.notify_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.connections += 1
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                method, path, _ = request_line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await self._read_body(reader, headers)
                reply = self._script.popleft() if self._script else self.default
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    if reply.delay:
                        await asyncio.sleep(reply.delay)
                finally:
                    self.in_flight -= 1
                if reply.drop:
                    await self._record(Request(method, path, headers, body, None))
                    return
                status = reply.status if path == self.path else 404
                await self._record(Request(method, path, headers, body, status))
                reason = _phrase(status)
                head = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(reply.body)}"]
                head += [f"{name}: {value}" for name, value in reply.headers.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readline()).split(b";")[0].strip(), 16)
                if size == 0:
                    await reader.readline()
                    return b"".join(chunks)
                chunks.append(await reader.readexactly(size))
                await reader.readline()
        return await reader.readexactly(int(headers.get("content-length", "0")))


__all__ = ["Receiver", "Reply", "Request"]


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
