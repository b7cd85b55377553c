"""A local HTTP server that serves one datafile with an ETag, like Optimizely's CDN.

async with DatafileServer(body, etag='"1"') as cdn:
    ... point trackd at cdn.url (or cdn.template for --sdk-key) ...
    cdn.publish(new_body, '"2"')   # the next poll gets it
    cdn.status = 503               # answer every request with this status instead
    cdn.requests                   # (path, if-none-match header, status answered)
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from tests.support.polling import eventually


@dataclass(frozen=True)
class Seen:
    path: str
    if_none_match: str | None
    status: int


class DatafileServer:
    def __init__(self, body: bytes = b"", etag: str | None = None, path: str = "/datafile.json"):
        self.body = body
        self.etag = etag
        self.path = path
        self.status: int | None = None  # when set, every request gets it
        self.requests: list[Seen] = []
        self._server: asyncio.Server | None = None
        self.url = ""
        self.base = ""

    def publish(self, body: bytes, etag: str | None) -> None:
        self.body, self.etag, self.status = body, etag, None

    async def __aenter__(self) -> DatafileServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.url = self.base + self.path
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def wait_for_requests(self, count: int, within: float = 10.0) -> None:
        await eventually(lambda: len(self.requests) >= count, within)

    def _answer(self, path: str, if_none_match: str | None) -> tuple[int, bytes]:
        if self.status is not None:
            return self.status, b"unavailable"
        if path != self.path:
            return 404, b"no such datafile"
        if self.etag is not None and if_none_match == self.etag:
            return 304, b""
        return 200, self.body

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                _, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                if_none_match = headers.get("if-none-match")
                status, body = self._answer(path, if_none_match)
                self.requests.append(Seen(path, if_none_match, status))
                head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
                if self.etag is not None and status in (200, 304):
                    head.append(f"ETag: {self.etag}")
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
