"""Connect on the HTTP port: the gRPC servicer's own methods behind the ASGI application that
connectrpc's generator made from proto/, so both transports decide, record and translate
through the same code, and their errors go through trackd.rpc.status alike.

Every RPC is served, as JSON or binary protobuf: the unary ones, WatchConfig (server
streaming) and TrackStream (bidirectional streaming; half-duplex over HTTP/1.1). connectrpc
serves gRPC-Web as well; gRPC proper belongs to the gRPC port.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from connectrpc.request import RequestContext
from google.protobuf import json_format, message_factory
from google.protobuf.message import DecodeError, Message

from trackd import asgi
from trackd.asgi import ASGIApp, Receive, Scope, Send
from trackd.errors import MessageTooLarge, UndecodableRequest
from trackd.rpc import status, wire
from trackd.rpc.decide_json import DecideJson
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
    """A unary servicer method as a Connect one, its reply a message or `Serialized`."""

    async def call(request: Any, ctx: RequestContext[Any, Any]) -> Any:
        reply = await handler(request, status.CONNECT_CONTEXT)
        return Serialized(reply, reply_type) if type(reply) is bytes else reply

    return call


@dataclass(frozen=True, slots=True)
class Serialized:
    """A unary reply the servicer answered already serialized (Decide's,
    `trackd.rpc.decisions`), which the codecs encode without parsing it into a message:
    binary protobuf as it is, JSON by `JsonCodec`."""

    data: bytes
    message_type: type[Message]


def as_message(reply: Any, reply_type: type[Message]) -> Any:
    """A servicer's reply as a message: Decide answers its response already serialized
    (`trackd.rpc.decisions`), which gRPC and Connect send as it is (`Serialized`) and Agent's
    API reads parsed."""
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

    def encode(self, message: Message | Serialized) -> bytes:
        if isinstance(message, Serialized):
            return message.data
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
    request that does not parse is INVALID_ARGUMENT. Decide's answer is printed by
    `trackd.rpc.decide_json`: byte for byte json_format's, in a fortieth of the time."""

    def __init__(self) -> None:
        self._decide_json = DecideJson()

    def name(self) -> str:
        return "json"

    def encode(self, message: Message | Serialized) -> bytes:
        if isinstance(message, Serialized):
            if message.message_type is pb.DecideResponse:
                return self._decide_json.encode(message.data)
            message = message.message_type.FromString(message.data)
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
    body (or a whole streamed message, whatever length its envelope claims) into memory
    before it compares its size with the limit. A TrackStream body is capped in all, not
    per batch as on gRPC: enough for what HTTP/1.1 carries half-duplex."""

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


async def _as_views(batches: AsyncIterator[pb.TrackStreamRequest]) -> AsyncIterator[Any]:
    """TrackStream's batches as the servicer reads them, `wire.TrackStreamRequestView` (the
    events left raw for its EventReader): what connectrpc decoded, written out and read
    again. Twice the parsing, on the HTTP port only."""
    async for batch in batches:
        yield wire.TrackStreamRequestView.FromString(batch.SerializeToString())


def without_grpc(application: ASGIApp) -> ASGIApp:
    """`application` refusing gRPC proper, which needs HTTP/2 trailers this port (uvicorn)
    has not: a 415 pointing to the gRPC port, where connectrpc would answer 500 and log a
    traceback. gRPC-Web (`application/grpc-web...`) carries its trailers in the body and
    passes."""

    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        content_type = next(
            (value for name, value in scope.get("headers", ()) if name == b"content-type"), b""
        )
        kind = content_type.partition(b";")[0].strip().lower()
        if kind == b"application/grpc" or kind.startswith(b"application/grpc+"):
            body = b"gRPC is served on the --listen port; this one speaks Connect and gRPC-Web\n"
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"accept-post", b"application/json, application/proto"),
            ]
            await send({"type": "http.response.start", "status": 415, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await application(scope, receive, send)

    return call


class ConnectTracking(pb_connect.TrackingService):
    """The generated Connect interface; each RPC is the servicer's method of the same name,
    found from the service descriptor, so an RPC added to proto/ is served here too.
    TrackStream is Connect bidirectional streaming, which HTTP/1.1 carries half-duplex: the
    batches, then their acknowledgements (each with its per-event errors)."""

    def __init__(self, servicer: TrackingServicer) -> None:
        self._servicer = servicer
        for rpc in SERVICE.methods:
            if rpc.client_streaming:  # TrackStream: the method below
                continue
            handler = getattr(servicer, rpc.name)
            served = (
                _on_connect(handler)
                if rpc.server_streaming
                else _unary_on_connect(handler, reply_type(rpc.name))
            )
            setattr(self, python_name(rpc.name), served)

    def track_stream(
        self, request: AsyncIterator[pb.TrackStreamRequest], ctx: RequestContext[Any, Any]
    ) -> AsyncIterator[pb.TrackStreamResponse]:
        replies: AsyncIterator[pb.TrackStreamResponse] = self._servicer.TrackStream(
            _as_views(request), status.CONNECT_CONTEXT
        )
        return replies


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
        async for reply in self._stream(ctx, lambda: call_next(request, ctx)):
            yield reply

    async def intercept_bidi_stream(
        self,
        call_next: Callable[[AsyncIterator[Any], RequestContext[Any, Any]], AsyncIterator[Any]],
        requests: AsyncIterator[Any],
        ctx: RequestContext[Any, Any],
    ) -> AsyncIterator[Any]:
        async for reply in self._stream(ctx, lambda: call_next(requests, ctx)):
            yield reply

    async def _stream(
        self, ctx: RequestContext[Any, Any], replies: Callable[[], AsyncIterator[Any]]
    ) -> AsyncIterator[Any]:
        method = self._admit(ctx)
        if not method.limited:
            async for reply in replies():
                yield reply
            return
        if (full := self._interceptor.take_stream()) is not None:
            raise status.connect_error(full)
        try:
            async for reply in self._interceptor.closing_at_shutdown(method, replies()):
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
    return without_grpc(capped(application, max_message_bytes))
