"""The gRPC endpoint: one grpc.aio server answering the tracking service, health and
reflection, every call through the interceptor, on the --listen port."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

from trackd.config import Settings
from trackd.live import LiveConfig
from trackd.rpc import values
from trackd.rpc.auth import Tokens
from trackd.rpc.interceptors import (
    RpcInterceptor,
    RpcObserver,
    add_intercepted,
    registered_handlers,
)
from trackd.rpc.reflection import reflection_services
from trackd.rpc.servicer import TrackingServicer, handlers
from trackd.rpc.tls import ServerCredentials
from trackd.tracking import Tracker
from trackd.v1 import tracking_service_pb2 as pb

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TrackingService"].full_name


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Producers that idle between bursts keep their streams: allow client pings every
        # 10 s even with no call in flight, instead of answering them with GOAWAY.
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_ping_strikes", 0),
        # `--workers N` processes share the port; otherwise a second daemon on the same port
        # must fail to start rather than silently split the traffic.
        ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
    ]


@dataclass
class Endpoint:
    """A bound (not yet started) gRPC server and the parts the daemon drives."""

    server: grpc.aio.Server
    health: health_aio.HealthServicer
    interceptor: RpcInterceptor
    servicer: TrackingServicer  # the HTTP port's Connect calls are answered by it too
    port: int

    async def set_serving(self, serving: bool) -> None:
        """Health for the whole server ("") and for the tracking service alike."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def start(self) -> None:
        await self.server.start()

    async def begin_shutdown(self) -> None:
        """Health says NOT_SERVING, so load balancers stop sending before the port closes."""
        await self.health.enter_graceful_shutdown()

    async def stop(self, grace: float) -> None:
        """Stops accepting and lets calls in flight finish within `grace` seconds."""
        self.interceptor.close()
        await self.server.stop(grace)


def open_endpoint(
    settings: Settings,
    tracker: Tracker,
    live: LiveConfig,
    credentials: ServerCredentials | None,
    tokens: Tokens | None,
    observer: RpcObserver | None,
) -> Endpoint:
    """Builds the server and binds its port; OSError (exit code 2) when it cannot."""
    health_servicer = health_aio.HealthServicer()
    interceptor = RpcInterceptor(
        live=live,
        tokens=tokens,
        max_streams=settings.max_concurrent_streams,
        observer=observer,
        log_every=settings.log_level == "debug",
        sample_rate=settings.log_sample_rate,
    )
    server = grpc.aio.server(options=grpc_options(settings))
    limits = values.Limits(
        max_entries=settings.max_attributes,
        max_key_length=settings.max_key_length,
        max_user_id_length=settings.max_user_id_length,
        max_string_value_length=settings.max_string_value_length,
    )
    servicer = TrackingServicer(tracker, limits, settings.max_stream_batch)
    services = [
        *handlers(servicer),
        *registered_handlers(
            partial(health_pb2_grpc.add_HealthServicer_to_server, health_servicer)
        ),
        *reflection_services((SERVICE_NAME, health.SERVICE_NAME)),
    ]
    add_intercepted(server, interceptor, services)
    port = listen(server, settings.listen, credentials)
    return Endpoint(server, health_servicer, interceptor, servicer, port)


def listen(server: grpc.aio.Server, address: str, credentials: ServerCredentials | None) -> int:
    """Binds the gRPC port; OSError (exit code 2) when it cannot."""
    try:
        if credentials is not None:
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as error:  # recent grpcio raises where older versions returned 0
        raise OSError(f"cannot listen on {address}: {error}") from error
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return port
