"""gRPC server reflection, as both `grpc.reflection.v1` and `grpc.reflection.v1alpha`.

Current grpcurl, buf curl, Postman and grpc-java's tools ask for v1 first; grpcio-reflection
(1.85) ships only v1alpha. The v1 messages are v1alpha's, field for field and number for
number (only the proto package was renamed), so one servicer answers both and its replies'
bytes are the same under either name.

grpcio-reflection looks symbols up in the default descriptor pool, which (protobuf's upb
backend) finds messages, fields, enums and services but not a service's methods: `grpcurl
describe trackd.v1.TrackingService.Activate` and `ghz --call` (which load a schema by the
method's name) got NOT_FOUND. A method is looked up here through its service.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_reflection.v1alpha import reflection_pb2

# `aio` is defined when grpc.aio imports, so the stubs do not see it.
from grpc_reflection.v1alpha.reflection import aio  # type: ignore[attr-defined]

V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
V1 = "grpc.reflection.v1.ServerReflection"
SERVICE_NAMES = (V1, V1ALPHA)
_METHOD = "ServerReflectionInfo"
V1_PROTO = "grpc/reflection/v1/reflection.proto"


def v1_file() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto: v1alpha's, its package renamed."""
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    file.name = V1_PROTO
    file.package = "grpc.reflection.v1"
    file.ClearField("options")  # v1alpha's Java and Go package names
    for message in file.message_type:
        for field in message.field:
            if field.HasField("type_name"):  # assigning even "" would give a scalar one
                field.type_name = field.type_name.replace(".v1alpha.", ".v1.")
    for service in file.service:
        for method in service.method:
            method.input_type = method.input_type.replace(".v1alpha.", ".v1.")
            method.output_type = method.output_type.replace(".v1alpha.", ".v1.")
    return file


def register_v1(pool: descriptor_pool.DescriptorPool) -> None:
    """Puts v1's proto in `pool`, where reflection finds the files it serves: a client that
    lists the services and then describes each (Postman, `grpcurl describe`) asks for it."""
    try:
        pool.FindFileByName(V1_PROTO)  # a later grpcio-reflection may register its own
    except KeyError:
        pool.Add(v1_file())


def file_containing_symbol(pool: descriptor_pool.DescriptorPool, symbol: str) -> FileDescriptor:
    """The file declaring `symbol`, a method (`package.Service.Method`) included; KeyError
    if none does."""
    try:
        return pool.FindFileContainingSymbol(symbol)
    except KeyError:
        service_name, _, method = symbol.rpartition(".")
        try:
            service = pool.FindServiceByName(service_name)
        except KeyError:
            pass
        else:
            if method in service.methods_by_name:
                return service.file
        raise


class ReflectionServicer(aio.ReflectionServicer):  # type: ignore[misc,name-defined]
    """grpcio-reflection's servicer (over the default pool), finding methods too."""

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        try:
            found = file_containing_symbol(descriptor_pool.Default(), fully_qualified_name)
        except KeyError:
            return super()._file_containing_symbol(request, fully_qualified_name)  # NOT_FOUND
        return self._file_by_filename(request, found.name)


def reflection_services(reflected: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
    """(service, handlers) of reflection v1 and v1alpha, listing `reflected` and themselves,
    in the form `interceptors.add_intercepted` takes."""
    register_v1(descriptor_pool.Default())
    servicer = ReflectionServicer((*reflected, *SERVICE_NAMES))
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    return [(name, {_METHOD: handler}) for name in SERVICE_NAMES]


__all__ = [
    "SERVICE_NAMES",
    "ReflectionServicer",
    "file_containing_symbol",
    "reflection_services",
    "v1_file",
]
