"""The one place where domain errors become status codes: gRPC's, and Connect's (the same
codes by name) for the HTTP port."""

from __future__ import annotations

from typing import Any, NoReturn, cast

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from trackd import errors

_CODES: tuple[tuple[type[errors.TrackdError], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.DatafileError, grpc.StatusCode.FAILED_PRECONDITION),
)


def code_for(error: errors.TrackdError) -> grpc.StatusCode:
    for family, code in _CODES:
        if isinstance(error, family):
            return code
    return grpc.StatusCode.INTERNAL


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: errors.TrackdError) -> NoReturn:
    """Ends the call with the error's status and its message (safe to show the caller)."""
    await context.abort(code_for(error), str(error))
    raise AssertionError("unreachable: context.abort raises")


async def abort_internal(context: grpc.aio.ServicerContext[Any, Any]) -> NoReturn:
    """Ends the call for an unexpected error: INTERNAL, with nothing of the error (it is
    logged, not shown to the caller)."""
    await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the daemon's log")
    raise AssertionError("unreachable: context.abort raises")


def number_for(error: errors.TrackdError) -> int:
    """The numeric code, as TrackStream reports per-event errors."""
    value: tuple[int, str] = code_for(error).value
    return value[0]


# Connect's codes are gRPC's by name and meaning; only CANCELLED is spelled CANCELED.
_CONNECT_CODES: dict[grpc.StatusCode, Code] = {
    code: Code.CANCELED if code is grpc.StatusCode.CANCELLED else Code[code.name]
    for code in grpc.StatusCode
    if code is not grpc.StatusCode.OK
}


# The HTTP status of each Connect code, as the Connect protocol gives it; Agent's REST API
# (trackd.rpc.agent) answers with the same.
_HTTP_STATUSES: dict[Code, int] = {
    Code.CANCELED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


def http_status(error: ConnectError) -> int:
    return _HTTP_STATUSES[error.code]


def connect_error(error: errors.TrackdError) -> ConnectError:
    """The Connect error of a domain error: its code and its message (safe to show)."""
    return ConnectError(_CONNECT_CODES[code_for(error)], str(error))


class ConnectContext:
    """Stands in for the grpc context when the servicer answers a Connect call. The servicer
    uses its context only to end a call with a status (`abort` above), so `abort` is all
    there is: it raises the ConnectError of the same code and message, which connectrpc
    sends as the Connect error."""

    __slots__ = ()

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise ConnectError(_CONNECT_CODES[code], details)


# What the servicer's methods are given on the HTTP port; one serves every call (it holds
# nothing), typed as what it stands in for.
CONNECT_CONTEXT = cast("grpc.aio.ServicerContext[Any, Any]", ConnectContext())
