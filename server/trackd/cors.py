"""CORS for the HTTP port (--http-cors-origins): a page from an allowed origin may call it
from a browser; any other origin gets no CORS headers, so the browser keeps its answers
from the page. None is allowed by default."""

from __future__ import annotations

from collections.abc import Collection

from trackd.asgi import ASGIApp, Message, Receive, Scope, Send

ANY_ORIGIN = "*"
# What a browser client sends beyond the simple headers: Connect's (as connectrpc.com/cors
# lists them), bearer tokens, Agent's SDK key and a request id.
ALLOWED_HEADERS = (
    "Content-Type, Content-Encoding, Accept-Encoding, Connect-Protocol-Version,"
    " Connect-Timeout-Ms, Connect-Accept-Encoding, Connect-Content-Encoding, X-User-Agent,"
    " Authorization, X-Optimizely-SDK-Key, X-Request-Id"
)
EXPOSED_HEADERS = "Content-Encoding, Connect-Content-Encoding, Connect-Accept-Encoding"
PREFLIGHT_CACHE_SECONDS = "7200"  # Chromium's cap; browsers ask again after it


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key.lower() == name), None)


class Cors:
    def __init__(self, application: ASGIApp, origins: Collection[str]) -> None:
        self._application = application
        self._any = ANY_ORIGIN in origins
        self._origins = frozenset(origin.encode() for origin in origins)

    def _allows(self, origin: bytes) -> bool:
        return self._any or origin in self._origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = _header(scope, b"origin") if scope["type"] == "http" else None
        if origin is None or not self._allows(origin):
            await self._application(scope, receive, send)
            return
        allowed = [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
            headers = [
                *allowed,
                (b"access-control-allow-methods", b"GET, POST"),
                (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                (b"access-control-max-age", PREFLIGHT_CACHE_SECONDS.encode()),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_allowed(message: Message) -> None:
            if message["type"] == "http.response.start":
                exposed = (b"access-control-expose-headers", EXPOSED_HEADERS.encode())
                message["headers"] = [*message.get("headers", ()), *allowed, exposed]
            await send(message)

        await self._application(scope, receive, send_allowed)
