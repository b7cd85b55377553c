"""Errors: one TrackdError hierarchy carrying the gRPC status code.

Catch `TrackdError` for everything, or a subclass for one status:

    try:
        client.track("no_such_event", "u")
    except trackd_client.NotFoundError as error:
        print(error.code, error.details)
"""

from __future__ import annotations

import grpc


class TrackdError(Exception):
    """A call to trackd failed; `code` is the grpc.StatusCode, `details` the server's message."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, details: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(details)
        self.details = details
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details}"


class InvalidArgumentError(TrackdError):
    """INVALID_ARGUMENT: an empty key, a value of the wrong type, a batch over the limit."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(TrackdError):
    """NOT_FOUND: the experiment, event or variation is not in the live datafile."""

    code = grpc.StatusCode.NOT_FOUND


class ResourceExhaustedError(TrackdError):
    """RESOURCE_EXHAUSTED: the outbox is full or a request limit was reached; retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(TrackdError):
    """FAILED_PRECONDITION: trackd's state forbids the call (a missing datafile is
    UNAVAILABLE)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class UnavailableError(TrackdError):
    """UNAVAILABLE: trackd cannot be reached, is shutting down, or has no datafile loaded
    yet; safe to retry."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(TrackdError):
    """DEADLINE_EXCEEDED: the call's timeout passed before trackd answered."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class CancelledError(TrackdError):
    """CANCELLED: the call was cancelled (e.g. the client was closed)."""

    code = grpc.StatusCode.CANCELLED


class InternalError(TrackdError):
    """INTERNAL: trackd failed unexpectedly; see the daemon's log."""

    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[TrackdError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        ResourceExhaustedError,
        FailedPreconditionError,
        UnavailableError,
        DeadlineExceededError,
        CancelledError,
        InternalError,
    )
}


def error_for(code: grpc.StatusCode, details: str) -> TrackdError:
    """The TrackdError subclass for a status code (TrackdError itself for other codes)."""
    cls = _BY_CODE.get(code)
    return cls(details) if cls is not None else TrackdError(details, code)


def code_from_number(number: int) -> grpc.StatusCode:
    """grpc.StatusCode from its number, as TrackStream reports codes."""
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code
    return grpc.StatusCode.UNKNOWN


def from_rpc_error(error: grpc.RpcError) -> TrackdError:
    """Wraps a grpc.RpcError (sync or aio); the original stays reachable as __cause__."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    wrapped = error_for(code or grpc.StatusCode.UNKNOWN, details or "")
    wrapped.__cause__ = error
    return wrapped
