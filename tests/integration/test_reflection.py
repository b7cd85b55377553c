"""Server reflection answers as grpc.reflection.v1 and v1alpha, and resolves every symbol a
schema-loading tool asks for, methods included: grpcurl and ghz work with no proto files."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.integration.test_daemon import DATAFILE
from tests.support.daemon import Process, spawn
from tests.support.go_tools import go_tool
from trackd.rpc.reflection import v1_file

# Each symbol, and the service or message (package.Name) its file must declare.
SYMBOLS = {
    "trackd.v1.TrackingService": "trackd.v1.TrackingService",
    # Methods: what `ghz --call` and `grpcurl describe Service.Method` ask for.
    "trackd.v1.TrackingService.Activate": "trackd.v1.TrackingService",
    "trackd.v1.TrackingService.TrackStream": "trackd.v1.TrackingService",
    "grpc.health.v1.Health.Check": "grpc.health.v1.Health",
    "trackd.v1.ActivateRequest": "trackd.v1.ActivateRequest",  # a message
    # Every listed service resolves, reflection v1's own too.
    "grpc.reflection.v1.ServerReflection": "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection": "grpc.reflection.v1alpha.ServerReflection",
}


def v1_messages() -> tuple[Any, Any]:
    """grpc.reflection.v1's request and response types, as a client compiled from the v1
    proto has them (trackd's copy of that proto; grpcurl below is a client built apart)."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(v1_file())
    found = pool.FindFileByName("grpc/reflection/v1/reflection.proto")
    return tuple(  # type: ignore[return-value]
        message_factory.GetMessageClass(found.message_types_by_name[name])
        for name in ("ServerReflectionRequest", "ServerReflectionResponse")
    )


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    with spawn(tmp_path_factory.mktemp("reflection"), "--datafile", str(DATAFILE)) as running:
        yield running


def ask(address: str, service: str, requests: list[Any], response_type: Any) -> list[Any]:
    with grpc.insecure_channel(address) as channel:
        info = channel.stream_stream(
            f"/{service}/ServerReflectionInfo",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        return list(info(iter(requests), timeout=30))


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_both_reflection_versions_list_services_and_resolve_every_symbol(
    daemon: Process, version: str
) -> None:
    if version == "v1":
        request_type, response_type = v1_messages()
    else:
        request_type = reflection_pb2.ServerReflectionRequest
        response_type = reflection_pb2.ServerReflectionResponse
    requests = [request_type(list_services="")]
    requests += [request_type(file_containing_symbol=symbol) for symbol in SYMBOLS]
    address = f"127.0.0.1:{daemon.port}"

    listed, *answers = ask(
        address, f"grpc.reflection.{version}.ServerReflection", requests, response_type
    )

    names = {service.name for service in listed.list_services_response.service}
    assert {
        "trackd.v1.TrackingService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    for (symbol, declared), answer in zip(SYMBOLS.items(), answers, strict=True):
        assert answer.WhichOneof("message_response") == "file_descriptor_response", (
            symbol,
            answer.error_response.error_message,
        )
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in answer.file_descriptor_response.file_descriptor_proto
        ]
        names = {
            f"{file.package}.{item.name}"
            for file in files
            for item in (*file.service, *file.message_type)
        }
        assert declared in names, (symbol, [file.name for file in files])


def test_an_unknown_symbol_is_not_found(daemon: Process) -> None:
    requests = [
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
        for symbol in (
            "trackd.v1.TrackingService.NoSuchMethod",
            "trackd.v1.NoSuchService.Activate",
        )
    ]
    answers = ask(
        f"127.0.0.1:{daemon.port}",
        "grpc.reflection.v1alpha.ServerReflection",
        requests,
        reflection_pb2.ServerReflectionResponse,
    )
    for answer in answers:
        assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_a_descriptor_pool_over_reflection_finds_the_method(daemon: Process) -> None:
    """What a Python tool that loads schemas by symbol does (grpcio-reflection's client)."""
    with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        method = pool.FindMethodByName("trackd.v1.TrackingService.Activate")
        assert method.input_type.full_name == "trackd.v1.ActivateRequest"
        assert method.output_type.full_name == "trackd.v1.ActivateResponse"


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_grpcurl_describes_a_method_through_reflection_alone(daemon: Process) -> None:
    tool = go_tool("grpcurl")
    address = f"127.0.0.1:{daemon.port}"
    described = run([tool, "-plaintext", address, "describe", "trackd.v1.TrackingService.Activate"])
    assert described.returncode == 0, described.stderr
    assert (
        "rpc Activate ( .trackd.v1.ActivateRequest ) returns ( .trackd.v1.ActivateResponse )"
        in (described.stdout)
    )
    # The v1 service answers on its own (grpcurl would fall back to v1alpha silently).
    listed = run([tool, "-plaintext", address, "list", "grpc.reflection.v1.ServerReflection"])
    assert listed.returncode == 0, listed.stderr
    assert "grpc.reflection.v1.ServerReflection.ServerReflectionInfo" in listed.stdout


def test_ghz_loads_the_method_by_reflection_and_calls_it(daemon: Process) -> None:
    body = {"experiment_key": "ab_running", "user_id": "ghz-{{.RequestNumber}}"}
    done = run(
        [
            go_tool("ghz"),
            "--insecure",
            "--call",
            "trackd.v1.TrackingService/Activate",  # no --proto: the schema comes by reflection
            "-d",
            json.dumps(body),
            "-n",
            "20",
            "--format",
            "json",
            f"127.0.0.1:{daemon.port}",
        ]
    )
    assert done.returncode == 0, done.stderr or done.stdout
    report = json.loads(done.stdout)
    assert report["statusCodeDistribution"] == {"OK": 20}, report.get("errorDistribution")
