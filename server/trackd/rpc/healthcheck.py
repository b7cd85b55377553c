"""`trackd health`: one standard gRPC health check against a running daemon."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from trackd.config import SettingsError
from trackd.rpc import tls


def check(
    address: str,
    *,
    timeout: float,
    use_tls: bool,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    server_name: str | None,
) -> int:
    """Prints the serving status; 0 when SERVING, else 1 with the reason on stderr."""
    try:
        credentials = tls.channel_credentials(ca, cert, key) if use_tls else None
    except SettingsError as error:
        print(f"trackd health: {error}", file=sys.stderr)
        return 1
    options = []
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    channel = (
        grpc.secure_channel(address, credentials, options=options)
        if credentials is not None
        else grpc.insecure_channel(address)
    )
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError as error:
            print(f"trackd health: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1
