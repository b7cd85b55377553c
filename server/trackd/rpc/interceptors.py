"""One interceptor for what every RPC shares: a request id and method bound to the log
context, bearer-token scopes, the not-yet-loaded guard, the concurrent stream cap, a metrics
observation and (at debug, or sampled at info) one log line.

It wraps the servicer's handlers without touching them: the servicer stays protobuf <-> domain.
Health and reflection pass through unguarded, but are still counted.

The handlers are wrapped once, as they are registered (`add_intercepted`), not per call by a
`grpc.aio.ServerInterceptor`: grpc.aio runs an interceptor as a coroutine chain and builds a
new handler for every call, which cost a tenth of a unary call's throughput here. Per call,
the wrapper reads the metadata itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import grpc
import structlog
from google.protobuf.message import DecodeError

from trackd.errors import (
    NoDatafileYet,
    PermissionDenied,
    TooManyStreams,
    TrackdError,
    Unauthenticated,
    UndecodableRequest,
)
from trackd.live import LiveConfig
from trackd.request_log import RequestLog, request_id
from trackd.rpc import status
from trackd.rpc.auth import Tokens, Verdict, scope_for

log = structlog.get_logger("trackd.rpc")

TRACKING_SERVICE = "trackd.v1.TrackingService"
LIMITED_STREAMS = frozenset({"TrackStream", "WatchConfig"})

Denial = TrackdError  # why a call is refused before its handler runs


def _auth_denial(verdict: Verdict, method: Method) -> Denial:
    if verdict is Verdict.MISSING:
        return Unauthenticated("missing bearer token: send metadata `authorization: Bearer TOKEN`")
    if verdict is Verdict.UNKNOWN:
        return Unauthenticated("unknown bearer token")
    return PermissionDenied(f"this token lacks the {method.scope!r} scope that {method.name} needs")


class RpcObserver(Protocol):
    def observe(self, service: str, method: str, code: str, seconds: float) -> None: ...


@dataclass(frozen=True, slots=True)
class Method:
    service: str
    name: str
    guarded: bool  # a TrackingService method: tokens and the loaded datafile apply
    scope: str
    limited: bool  # counts against --max-concurrent-streams
    label: str  # `service/Name`, as the log context names it: formatted once, not per call

    @classmethod
    def parse(cls, full: str) -> Method:
        service, _, name = full.lstrip("/").partition("/")
        guarded = service == TRACKING_SERVICE
        return cls(
            service,
            name,
            guarded,
            scope_for(name),
            guarded and name in LIMITED_STREAMS,
            f"{service}/{name}",
        )


def _code_name(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if error is None or isinstance(error, GeneratorExit):
        return "OK"
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    return "UNKNOWN"


class Undecodable:
    """Stands in for a request whose bytes are not a valid message, so the handler can answer
    INVALID_ARGUMENT; left to gRPC, a DecodeError becomes UNKNOWN naming a Python class."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = UndecodableRequest(error)


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as error:
            return Undecodable(error)

    return deserialize


def _passing_bytes(serializer: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """A reply that is already its serialized bytes (Decide's, `trackd.rpc.decisions`) goes
    out as it is; a message is serialized."""
    if serializer is None:
        return None

    def serialize(reply: Any) -> bytes:
        return reply if type(reply) is bytes else serializer(reply)

    return serialize


async def _refuse_undecodable(
    requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Undecodable):
            await status.abort(context, request.error)
        yield request


class RpcInterceptor:
    def __init__(
        self,
        *,
        live: LiveConfig,
        tokens: Tokens | None = None,
        max_streams: int = 256,
        observer: RpcObserver | None = None,
        log_every: bool = False,
        sample_rate: float = 0.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._live = live
        self._tokens = tokens
        self.max_streams = max_streams
        self._observer = observer
        self.request_log = RequestLog(log_every=log_every, sample_rate=sample_rate, rng=rng)
        # Read by the metrics collector.
        self.open_streams = 0
        self.rejected_streams = 0
        self.auth_failures: Counter[str] = Counter()
        self._closing = asyncio.Event()

    def close(self) -> None:
        """At shutdown: open WatchConfig streams end with OK instead of holding the drain."""
        self._closing.set()

    def wrap(self, full_method: str, handler: Any) -> Any:
        """`handler` (a grpc.RpcMethodHandler) of `/service/Method`, intercepted."""
        method = Method.parse(full_method)
        # partial, not a closure: gRPC picks how to drive a behavior by inspecting it
        # (coroutine or async generator function), and inspect sees through a partial.
        serializers = (
            _tolerant(handler.request_deserializer),
            _passing_bytes(handler.response_serializer),
        )
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                partial(self._unary, handler.unary_unary, method), *serializers
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                partial(self._unary, handler.stream_unary, method), *serializers
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                partial(self._stream, handler.unary_stream, method), *serializers
            )
        return grpc.stream_stream_rpc_method_handler(
            partial(self._stream, handler.stream_stream, method), *serializers
        )

    def _admit(
        self, method: Method, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[Denial | None, str]:
        """Why the call is refused (None: it is not), and its request id."""
        authorization: str | None = None
        given: str | None = None
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                authorization = value
            elif key == "x-request-id" and isinstance(value, str):
                given = value
        denial = self.deny(method, authorization) if method.guarded else None
        return denial, request_id(given)

    def deny(self, method: Method, authorization: str | None) -> Denial | None:
        """Why a TrackingService call is refused (None: it is not); Connect calls too."""
        if self._tokens is not None:
            verdict = self._tokens.check(authorization, method.scope)
            if verdict is not Verdict.ALLOWED:
                self.auth_failures[verdict.value] += 1
                return _auth_denial(verdict, method)
        if not self._live.loaded:
            return NoDatafileYet()
        return None

    async def _unary(
        self,
        inner: Any,
        method: Method,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> Any:
        started = time.perf_counter()
        denial, request_id = self._admit(method, context)
        bound = structlog.contextvars.bind_contextvars(request_id=request_id, method=method.label)
        error: BaseException | None = None
        try:
            if denial is not None:
                await status.abort(context, denial)
            if isinstance(request, Undecodable):
                await status.abort(context, request.error)
            return await inner(request, context)
        except BaseException as caught:
            error = caught
            raise
        finally:
            self._finish(method, context, error, started)
            structlog.contextvars.reset_contextvars(**bound)

    async def _stream(
        self,
        inner: Any,
        method: Method,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        """Writes the replies with `context.write` rather than being an async generator: grpc
        drops a cancelled call's generator where it yielded, and its `finally` then ran later,
        from a task the event loop made to close it, in another context. Resetting the log
        context's tokens there raised ValueError ("created in a different Context"), and the
        stream slot stayed taken until then. As a coroutine it all runs in the call's task."""
        started = time.perf_counter()
        denial, request_id = self._admit(method, context)
        bound = structlog.contextvars.bind_contextvars(request_id=request_id, method=method.label)
        error: BaseException | None = None
        counted = False
        try:
            if denial is not None:
                await status.abort(context, denial)
            if method.limited:
                if (full := self.take_stream()) is not None:
                    await status.abort(context, full)
                counted = True
            if isinstance(request, Undecodable):
                await status.abort(context, request.error)
            if hasattr(request, "__aiter__"):
                request = _refuse_undecodable(request, context)
            replies = self.closing_at_shutdown(method, inner(request, context))
            if hasattr(replies, "__aiter__"):
                async with contextlib.aclosing(replies):  # closed here, in this task
                    async for reply in replies:
                        await context.write(reply)
            else:  # a handler that writes with context.write() and returns None
                await replies
        except BaseException as caught:
            error = caught
            raise
        finally:
            if counted:
                self.release_stream()
            self._finish(method, context, error, started)
            structlog.contextvars.reset_contextvars(**bound)

    def take_stream(self) -> Denial | None:
        """Counts one more open stream, or refuses it at --max-concurrent-streams; the HTTP
        port's streams count here too."""
        if self.open_streams >= self.max_streams:
            self.rejected_streams += 1
            return TooManyStreams(self.open_streams)
        self.open_streams += 1
        return None

    def release_stream(self) -> None:
        self.open_streams -= 1

    def closing_at_shutdown(self, method: Method, replies: Any) -> Any:
        """A WatchConfig stream's replies end when the daemon shuts down (`close`); other
        streams run on (TrackStream's acknowledgements drain)."""
        if method.name == "WatchConfig" and method.guarded:
            return self.until_closed(replies)
        return replies

    async def until_closed(self, replies: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """`replies` until they end or the daemon shuts down (`close`), whichever is first."""
        closing = asyncio.ensure_future(self._closing.wait())
        following: asyncio.Future[Any] | None = None
        try:
            while True:
                following = asyncio.ensure_future(anext(replies))
                await asyncio.wait((following, closing), return_when=asyncio.FIRST_COMPLETED)
                if not following.done():
                    return
                try:
                    reply = following.result()
                except StopAsyncIteration:
                    return
                yield reply
        finally:
            closing.cancel()
            if following is not None:
                following.cancel()

    def _finish(
        self,
        method: Method,
        context: grpc.aio.ServicerContext[Any, Any],
        error: BaseException | None,
        started: float,
    ) -> None:
        elapsed = time.perf_counter() - started
        code = _code_name(context, error)
        if self._observer is not None:
            self._observer.observe(method.service, method.name, code, elapsed)
        if self.request_log.enabled:  # off by default: no fields built for nothing
            self.request_log.line("rpc", code=code, duration_ms=round(elapsed * 1000, 3))


class _Registrations:
    """Stands in for a server to catch what a generated `add_*_to_server` adds."""

    def __init__(self) -> None:
        self.services: list[tuple[str, dict[str, Any]]] = []  # grpc.RpcMethodHandler values
        self.generic = 0

    def add_generic_rpc_handlers(self, handlers: Sequence[object]) -> None:
        self.generic += len(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.services.append((service, handlers))


def registered_handlers(add: Callable[[Any], None]) -> list[tuple[str, dict[str, Any]]]:
    """What `add(server)` (a generated `add_*_to_server`) registers: (service, handlers)."""
    caught = _Registrations()
    add(caught)
    if caught.generic != len(caught.services):
        # Only generated code that also registers its methods by name can be wrapped here.
        raise RuntimeError(f"{add!r} registered handlers that cannot be intercepted")
    return caught.services


def add_intercepted(
    server: grpc.aio.Server,
    interceptor: RpcInterceptor,
    services: Sequence[tuple[str, dict[str, Any]]],
) -> None:
    """Adds each service's handlers to `server`, every one wrapped by `interceptor`."""
    for service, handlers in services:
        wrapped = {
            name: interceptor.wrap(f"/{service}/{name}", handler)
            for name, handler in handlers.items()
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, wrapped),))
        # Missing from grpc's type stubs; present since grpcio 1.63.
        server.add_registered_method_handlers(service, wrapped)  # type: ignore[attr-defined]
