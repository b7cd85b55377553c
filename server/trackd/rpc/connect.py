"""Connect on the HTTP port: the gRPC servicer's own methods behind the ASGI application that
connectrpc's generator made from proto/, so both transports decide, record and translate
through the same code, and their errors go through trackd.rpc.status alike.

Every unary RPC and WatchConfig (server streaming) are served, as JSON or binary protobuf.
TrackStream is not yet: it answers Connect's `unimplemented` (the generated default).
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from connectrpc.request import RequestContext
from google.protobuf import json_format, message_factory
from google.protobuf.message import DecodeError, Message

from trackd import asgi
from trackd.asgi import ASGIApp, Receive, Scope, Send
from trackd.errors import MessageTooLarge, UndecodableRequest
from trackd.rpc import status
from trackd.rpc.interceptors import Method, RpcInterceptor
from trackd.rpc.servicer import TrackingServicer
from trackd.v1 import tracking_service_connect as pb_connect
from trackd.v1 import tracking_service_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["TrackingService"]
PATHS = tuple(f"/{SERVICE.full_name}/{rpc.name}" for rpc in SERVICE.methods)  # Connect's routes

Handler = Callable[[Any, "grpc.aio.ServicerContext[Any, Any]"], Any]


def python_name(rpc: str) -> str:
    """The generated Connect interface's name of an RPC: GetConfig -> get_config."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", rpc).lower()


def _on_connect(handler: Handler) -> Callable[[Any, RequestContext[Any, Any]], Any]:
    """A servicer method as a Connect one: the coroutine (unary) or async iterator (server
    streaming) it returns is what connectrpc awaits or iterates."""

    def call(request: Any, ctx: RequestContext[Any, Any]) -> Any:
        return handler(request, status.CONNECT_CONTEXT)

    return call


def _unary_on_connect(
    handler: Handler, reply_type: type[Message]
) -> Callable[[Any, RequestContext[Any, Any]], Awaitable[Any]]:
    """A unary servicer method as a Connect one, its reply always a message."""

    async def call(request: Any, ctx: RequestContext[Any, Any]) -> Any:
        return as_message(await handler(request, status.CONNECT_CONTEXT), reply_type)

    return call


def as_message(reply: Any, reply_type: type[Message]) -> Any:
    """A servicer's reply as a message: Decide answers its response already serialized
    (`trackd.rpc.decisions`), which gRPC sends as it is and HTTP callers need parsed."""
    return reply_type.FromString(reply) if type(reply) is bytes else reply


def reply_type(rpc: str) -> type[Message]:
    """The message class an RPC answers with."""
    return _REPLY_TYPES[rpc]


_REPLY_TYPES: dict[str, type[Message]] = {
    rpc.name: message_factory.GetMessageClass(rpc.output_type) for rpc in SERVICE.methods
}


class ProtoCodec:
    """Binary protobuf. A request that does not parse is the caller's mistake, as on gRPC
    (`interceptors.Undecodable`): INVALID_ARGUMENT; connectrpc 0.10.1's own codec lets the
    DecodeError through, and the caller got `internal`."""

    def name(self) -> str:
        return "proto"

    def encode(self, message: Message) -> bytes:
        return message.SerializeToString()

    def decode(self, data: bytes | bytearray, message: Message) -> Message:
        try:
            message.ParseFromString(bytes(data))
        except DecodeError as error:
            raise status.connect_error(UndecodableRequest(error)) from None
        return message


class JsonCodec:
    """Protobuf JSON, as connect-go speaks it and unlike connectrpc 0.10.1's own codec:
    unknown fields are ignored (as binary protobuf ignores them, so a newer caller's added
    field does not break an older daemon), the answer is compact rather than indented, and a
    request that does not parse is INVALID_ARGUMENT."""

    def name(self) -> str:
        return "json"

    def encode(self, message: Message) -> bytes:
        return json_format.MessageToJson(message, indent=None).encode()

    def decode(self, data: bytes | bytearray, message: Message) -> Message:
        try:
            json_format.Parse(bytes(data), message, ignore_unknown_fields=True)
        # ParseError, or UnicodeDecodeError (a ValueError) on bytes that are not UTF-8.
        except (json_format.ParseError, ValueError) as error:
            raise status.connect_error(UndecodableRequest(error)) from None
        return message


class BoundedGzip:
    """gzip whose inflating stops past the message limit: connectrpc checks a request's size
    only once it is inflated, so a few kilobytes of gzip bomb would fill memory first."""

    def __init__(self, limit: int) -> None:
        self._limit = limit

    def name(self) -> str:
        return "gzip"

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        return gzip.compress(data)

    def decompress(self, data: bytes | bytearray | memoryview) -> bytes:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing
        try:
            inflated = inflater.decompress(data, self._limit + 1)
        except zlib.error as error:
            raise status.connect_error(UndecodableRequest(error)) from None
        if len(inflated) > self._limit:
            raise status.connect_error(MessageTooLarge(self._limit))
        return inflated


def capped(application: ASGIApp, limit: int) -> ASGIApp:
    """`application` reading at most `limit` bytes of a request body: connectrpc reads a whole
    body into memory before it compares its size with the limit."""

    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        received = 0

        async def receive_capped() -> asgi.Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise status.connect_error(MessageTooLarge(limit))
            return message

        await application(scope, receive_capped, send)

    return call


class ConnectTracking(pb_connect.TrackingService):
    """The generated Connect interface; each RPC is the servicer's method of the same name,
    found from the service descriptor, so an RPC added to proto/ is served here too."""

    def __init__(self, servicer: TrackingServicer) -> None:
        for rpc in SERVICE.methods:
            handler = getattr(servicer, rpc.name)
            if rpc.client_streaming:  # TrackStream keeps the generated UNIMPLEMENTED
                continue
            served = (
                _on_connect(handler)
                if rpc.server_streaming
                else _unary_on_connect(handler, reply_type(rpc.name))
            )
            setattr(self, python_name(rpc.name), served)


class Admission:
    """A Connect call is admitted as the gRPC interceptor admits a TrackingService call: the
    same bearer-token scopes (from the `authorization` header) and the same loaded-datafile
    guard, decided by the same `RpcInterceptor.deny`. A stream (WatchConfig) takes one of the
    same --max-concurrent-streams slots and ends when the daemon shuts down, as on gRPC."""

    def __init__(self, interceptor: RpcInterceptor) -> None:
        self._interceptor = interceptor
        self._methods = {method.name: method for method in map(Method.parse, PATHS)}

    def _admit(self, ctx: RequestContext[Any, Any]) -> Method:
        method = self._methods[ctx.method().name]
        denial = self._interceptor.deny(method, ctx.request_headers().get("authorization"))
        if denial is not None:
            raise status.connect_error(denial)
        return method

    async def intercept_unary(
        self,
        call_next: Callable[[Any, RequestContext[Any, Any]], Awaitable[Any]],
        request: Any,
        ctx: RequestContext[Any, Any],
    ) -> Any:
        self._admit(ctx)
        return await call_next(request, ctx)

    async def intercept_server_stream(
        self,
        call_next: Callable[[Any, RequestContext[Any, Any]], AsyncIterator[Any]],
        request: Any,
        ctx: RequestContext[Any, Any],
    ) -> AsyncIterator[Any]:
        if not self._admit(ctx).limited:
            async for reply in call_next(request, ctx):
                yield reply
            return
        if (full := self._interceptor.take_stream()) is not None:
            raise status.connect_error(full)
        try:
            async for reply in self._interceptor.until_closed(call_next(request, ctx)):
                yield reply
        finally:
            self._interceptor.release_stream()


def connect_application(
    servicer: TrackingServicer, interceptor: RpcInterceptor, max_message_bytes: int
) -> ASGIApp:
    """The ASGI application answering Connect calls to the TrackingService; a request over
    `max_message_bytes`, as sent or inflated, is RESOURCE_EXHAUSTED as on gRPC."""
    application = pb_connect.TrackingServiceASGIApplication(
        ConnectTracking(servicer),
        interceptors=[Admission(interceptor)],
        codecs=[ProtoCodec(), JsonCodec()],
        compressions=[BoundedGzip(max_message_bytes)],
        read_max_bytes=max_message_bytes,
    )
    return capped(application, max_message_bytes)
