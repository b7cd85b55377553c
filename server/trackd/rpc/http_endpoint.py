"""The HTTP endpoint: the applications behind the --http-listen port (Connect, and Agent's
REST API with its /v1/batch), answered by the gRPC endpoint's own servicer and admitted by
its interceptor, on a bound (not yet started) HttpServer."""

from __future__ import annotations

import ssl

from prometheus_client import CollectorRegistry

from trackd import metrics
from trackd.agent_batch import BATCH_PATH, AgentBatch
from trackd.config import Settings
from trackd.http_server import HttpServer
from trackd.live import LiveConfig
from trackd.notifications import Notifier
from trackd.rpc.agent import AgentApi
from trackd.rpc.connect import PATHS, connect_application
from trackd.rpc.endpoint import Endpoint


def open_http_endpoint(
    settings: Settings,
    endpoint: Endpoint,
    live: LiveConfig,
    tls: ssl.SSLContext | None,
    registry: CollectorRegistry | None,
    notifier: Notifier,
) -> HttpServer:
    """Binds the port; OSError (exit code 2) when it cannot."""
    agent = AgentApi(
        endpoint.servicer,
        endpoint.interceptor,
        live,
        sdk_key=settings.sdk_key,
        max_body_bytes=settings.max_message_bytes,
        notifier=notifier,
    )
    batch = AgentBatch(
        agent,
        max_operations=settings.http_batch_max_operations,
        max_body_bytes=settings.max_message_bytes,
    )
    connect = connect_application(
        endpoint.servicer, endpoint.interceptor, settings.max_message_bytes
    )
    return HttpServer(
        settings.http_listen,
        {"/v1/": batch, "/": connect},
        live,
        reuse_port=settings.workers > 1,
        grace=settings.grace_period,
        tls=tls,
        routes=(*PATHS, *agent.paths, BATCH_PATH),
        observer=metrics.HttpMetrics(registry) if registry else None,
        request_log=endpoint.interceptor.request_log,
        cors_origins=settings.http_cors_origins,
    )
