"""The HTTP port (--http-listen): uvicorn on the daemon's own event loop, beside the gRPC
server. It answers /healthz and /readyz itself, for HTTP load balancers, and hands every
other request to the ASGI application of the first path prefix that matches it (Agent's
REST API under /v1/, trackd.rpc.agent; Connect for the rest, trackd.rpc.connect).

uvicorn's `Server.serve` is not used: it takes SIGTERM and SIGINT for itself, and those belong
to `trackd.server.serve`. Its steps are run here instead, on a socket bound beforehand so a
port that is taken is one line at start (exit code 2) and port 0 tells its number at once.
"""

from __future__ import annotations

import asyncio
import math
import socket
import ssl
import time
from collections.abc import Collection, Mapping
from typing import Protocol

import structlog
import uvicorn

from trackd.asgi import ASGIApp, Message, Receive, Scope, Send
from trackd.cors import Cors
from trackd.live import LiveConfig
from trackd.request_log import RequestLog, request_id

LIVE_PATH = "/healthz"
READY_PATH = "/readyz"
OTHER_ROUTE = "other"  # any path not served, as a metrics label: the label set stays bounded
KEEP_ALIVE_SECONDS = 75


class HttpObserver(Protocol):
    def observe(self, route: str, status: int, seconds: float) -> None: ...


def bind(address: str, *, reuse_port: bool) -> socket.socket:
    """A TCP socket bound to HOST:PORT (IPv6 hosts in brackets); OSError naming it when it
    cannot be. `reuse_port` lets `--workers N` processes share the port, as on gRPC's."""
    host, _, port = address.rpartition(":")
    try:
        family, kind, proto, _, where = socket.getaddrinfo(
            host.strip("[]"), int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise OSError(f"cannot listen on {address} for HTTP: {error.strerror}") from error
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(where)
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {address} for HTTP: {error.strerror}") from error
    return sock


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class HttpServer:
    """A bound, not yet started, HTTP port."""

    def __init__(
        self,
        address: str,
        applications: Mapping[str, ASGIApp],
        live: LiveConfig,
        *,
        reuse_port: bool,
        grace: float,
        tls: ssl.SSLContext | None = None,
        routes: Collection[str] = (),
        observer: HttpObserver | None = None,
        request_log: RequestLog | None = None,
        cors_origins: Collection[str] = (),
    ) -> None:
        self._applications = tuple(applications.items())  # (path prefix, application)
        self._answer: ASGIApp = Cors(self._route, cors_origins) if cors_origins else self._route
        self._routes = frozenset((LIVE_PATH, READY_PATH, *routes))
        self._observer = observer
        self._request_log = request_log or RequestLog()
        self._live = live
        self._draining = False
        self._socket = bind(address, reuse_port=reuse_port)
        self.port: int = self._socket.getsockname()[1]
        self._config = uvicorn.Config(
            self._observed,
            interface="asgi3",  # a bound method: uvicorn would guess ASGI2
            http="httptools",  # see pyproject.toml: a third less CPU per request than h11
            # Longer than load balancers keep an idle connection (AWS's 60 s): were the
            # daemon to close it first, a request the balancer sends on it as it closes
            # fails with a 502 (uvicorn's own default is 5 s).
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            lifespan="off",  # nothing to start: every part is the daemon's, started already
            log_config=None,  # the daemon's logging stays as trackd.logs set it
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=math.ceil(grace),  # uvicorn takes whole seconds
        )
        self._tls = tls
        self._server = uvicorn.Server(self._config)
        self._ticking: asyncio.Task[None] | None = None

    async def _observed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Each request: its route and request id bound to the log context, and, once
        answered, one metrics observation and (at debug, or sampled) one log line."""
        if scope["type"] != "http":
            await self._answer(scope, receive, send)
            return
        started = time.perf_counter()
        answered = 0

        async def send_observed(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = message["status"]
            await send(message)

        path = scope["path"]
        route = path if path in self._routes else OTHER_ROUTE
        given = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"x-request-id"),
            None,
        )
        bound = structlog.contextvars.bind_contextvars(request_id=request_id(given), route=route)
        try:
            await self._answer(scope, receive, send_observed)
        finally:
            elapsed = time.perf_counter() - started
            status = answered or 500  # nothing sent: uvicorn answers 500 for the application
            if self._observer is not None:
                self._observer.observe(route, status, elapsed)
            self._request_log.line("http", status=status, duration_ms=round(elapsed * 1000, 3))
            structlog.contextvars.reset_contextvars(**bound)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] == "http" and path == LIVE_PATH:
            await _plain(send, 200, "live\n")
        elif scope["type"] == "http" and path == READY_PATH:
            if self._draining:
                await _plain(send, 503, "shutting down\n")
            elif not self._live.loaded:
                await _plain(send, 503, "no datafile loaded yet\n")
            else:
                await _plain(send, 200, "ready\n")
        else:
            for prefix, application in self._applications:
                if path is None or path.startswith(prefix):
                    await application(scope, receive, send)
                    return
            await _plain(send, 404, "not found\n")

    async def start(self) -> None:
        self._config.load()
        # The context trackd.rpc.tls built and checked, rather than uvicorn's from file names
        # (which would prompt on the terminal for an encrypted key).
        self._config.ssl = self._tls
        self._server.lifespan = self._config.lifespan_class(self._config)
        await self._server.startup(sockets=[self._socket])
        # uvicorn's own loop: it refreshes the Date header each second and notices should_exit.
        self._ticking = asyncio.create_task(self._server.main_loop(), name="trackd-http")

    def begin_shutdown(self) -> None:
        """/readyz says 503, so load balancers stop sending before the port closes."""
        self._draining = True

    async def stop(self) -> None:
        """Stops accepting and lets requests in flight finish within the grace period."""
        self._server.should_exit = True
        if self._ticking is not None:
            await self._ticking
            await self._server.shutdown(sockets=[self._socket])
        else:
            self._socket.close()
