"""One server interceptor for what every RPC shares: a request id and method bound to the log
context, bearer-token scopes, the not-yet-loaded guard, the concurrent stream cap, a metrics
observation and (at debug, or sampled at info) one log line.

It wraps the servicer's handlers without touching them: the servicer stays protobuf <-> domain.
Health and reflection pass through unguarded, but are still counted.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import grpc
import structlog
from google.protobuf.message import DecodeError

from trackd import status
from trackd.auth import Tokens, Verdict, scope_for
from trackd.errors import (
    NoDatafileYet,
    PermissionDenied,
    TooManyStreams,
    TrackdError,
    Unauthenticated,
    UndecodableRequest,
)
from trackd.live import LiveConfig

log = structlog.get_logger("trackd.rpc")

TRACKING_SERVICE = "trackd.v1.TrackingService"
LIMITED_STREAMS = frozenset({"TrackStream", "WatchConfig"})
MAX_REQUEST_ID = 128

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

    @classmethod
    def parse(cls, full: str) -> Method:
        service, _, name = full.lstrip("/").partition("/")
        guarded = service == TRACKING_SERVICE
        return cls(service, name, guarded, scope_for(name), guarded and name in LIMITED_STREAMS)


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


async def _refuse_undecodable(
    requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Undecodable):
            await status.abort(context, request.error)
        yield request


class RpcInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
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
        self._log_every = log_every
        self._sample_rate = sample_rate
        self._rng = rng
        self._methods: dict[str, Method] = {}
        # Read by the metrics collector.
        self.open_streams = 0
        self.rejected_streams = 0
        self.auth_failures: Counter[str] = Counter()
        self._closing = asyncio.Event()

    def close(self) -> None:
        """At shutdown: open WatchConfig streams end with OK instead of holding the drain."""
        self._closing.set()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None  # UNIMPLEMENTED, answered by gRPC itself
        method = self._methods.get(details.method)
        if method is None:
            method = self._methods[details.method] = Method.parse(details.method)
        authorization: str | None = None
        request_id: str | None = None
        for key, value in details.invocation_metadata or ():
            if key == "authorization" and isinstance(value, str):
                authorization = value
            elif key == "x-request-id" and isinstance(value, str):
                request_id = value[:MAX_REQUEST_ID]
        denial = self._deny(method, authorization) if method.guarded else None
        return self._wrap(handler, method, denial, request_id or os.urandom(8).hex())

    def _deny(self, method: Method, authorization: str | None) -> Denial | None:
        if self._tokens is not None:
            verdict = self._tokens.check(authorization, method.scope)
            if verdict is not Verdict.ALLOWED:
                self.auth_failures[verdict.value] += 1
                return _auth_denial(verdict, method)
        if not self._live.loaded:
            return NoDatafileYet()
        return None

    def _wrap(self, handler: Any, method: Method, denial: Denial | None, request_id: str) -> Any:
        # partial, not a closure: gRPC picks how to drive a behavior by inspecting it
        # (coroutine or async generator function), and inspect sees through a partial.
        serializers = (_tolerant(handler.request_deserializer), handler.response_serializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                partial(self._unary, handler.unary_unary, method, denial, request_id),
                *serializers,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                partial(self._unary, handler.stream_unary, method, denial, request_id),
                *serializers,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                partial(self._stream, handler.unary_stream, method, denial, request_id),
                *serializers,
            )
        return grpc.stream_stream_rpc_method_handler(
            partial(self._stream, handler.stream_stream, method, denial, request_id),
            *serializers,
        )

    async def _unary(
        self,
        inner: Any,
        method: Method,
        denial: Denial | None,
        request_id: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> Any:
        started = time.perf_counter()
        bound = structlog.contextvars.bind_contextvars(
            request_id=request_id, method=f"{method.service}/{method.name}"
        )
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
        denial: Denial | None,
        request_id: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[Any]:
        started = time.perf_counter()
        bound = structlog.contextvars.bind_contextvars(
            request_id=request_id, method=f"{method.service}/{method.name}"
        )
        error: BaseException | None = None
        counted = False
        try:
            if denial is not None:
                await status.abort(context, denial)
            if method.limited:
                if self.open_streams >= self.max_streams:
                    self.rejected_streams += 1
                    await status.abort(context, TooManyStreams(self.open_streams))
                self.open_streams += 1
                counted = True
            if isinstance(request, Undecodable):
                await status.abort(context, request.error)
            if hasattr(request, "__aiter__"):
                request = _refuse_undecodable(request, context)
            replies = inner(request, context)
            if method.name == "WatchConfig" and method.guarded:
                replies = self._until_closed(replies)
            if hasattr(replies, "__aiter__"):
                async for reply in replies:
                    yield reply
            else:  # a handler that writes with context.write() and returns None
                await replies
        except BaseException as caught:
            error = caught
            raise
        finally:
            if counted:
                self.open_streams -= 1
            self._finish(method, context, error, started)
            structlog.contextvars.reset_contextvars(**bound)

    async def _until_closed(self, replies: AsyncIterator[Any]) -> AsyncIterator[Any]:
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
        if self._log_every:
            log.debug("rpc", code=code, duration_ms=round(elapsed * 1000, 3))
        elif self._sample_rate and self._rng() < self._sample_rate:
            log.info("rpc", code=code, duration_ms=round(elapsed * 1000, 3), sampled=True)
