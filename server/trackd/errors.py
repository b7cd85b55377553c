"""Domain errors raised by plain code; `trackd.rpc.status` maps each family to one gRPC code."""

from __future__ import annotations


class TrackdError(Exception):
    """Base of every expected error: its message is safe to show to the caller."""


class InvalidArgument(TrackdError):
    """The request is malformed: an empty key, a wrong value kind, an oversized field."""


class NotFound(TrackdError):
    """The request names something the live datafile does not have."""


class ResourceExhausted(TrackdError):
    """A bound was reached: the outbox is full, too many streams, a batch too large."""


class FailedPrecondition(TrackdError):
    """The daemon's state forbids the operation: the outbox is held by another process.
    (No datafile loaded yet is `NoDatafileYet`, UNAVAILABLE: it passes, so callers retry.)"""


class Unavailable(TrackdError):
    """A dependency is down; the caller may retry."""


class Unauthenticated(TrackdError):
    """No bearer token, or one the daemon does not know."""


class PermissionDenied(TrackdError):
    """A known token without the scope the method needs."""


class NoDatafileYet(Unavailable):
    """A URL source has not delivered its first datafile: UNAVAILABLE, the code clients
    retry on, since waiting is all it takes."""

    def __init__(self) -> None:
        super().__init__("no datafile loaded yet; retry when health reports SERVING")


class TooManyStreams(ResourceExhausted):
    def __init__(self, open_streams: int) -> None:
        super().__init__(
            f"{open_streams} TrackStream/WatchConfig calls are open, the limit"
            " (--max-concurrent-streams); retry later"
        )


class BatchTooLarge(InvalidArgument):
    def __init__(self, events: int, limit: int) -> None:
        super().__init__(
            f"batch of {events} events is over the limit of {limit}; nothing in it was stored"
        )


class UndecodableRequest(InvalidArgument):
    def __init__(self, detail: object) -> None:
        super().__init__(f"the request is not a valid protobuf message: {detail}")


class MessageTooLarge(ResourceExhausted):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request is over the limit of {limit} bytes (--max-message-bytes)")


class UnknownExperiment(NotFound):
    def __init__(self, key: str) -> None:
        super().__init__(f"experiment {key!r} is not in the datafile")


class UnknownEvent(NotFound):
    def __init__(self, key: str) -> None:
        super().__init__(f"event {key!r} is not in the datafile")


class UnknownVariation(NotFound):
    def __init__(self, experiment_key: str, variation_key: str) -> None:
        super().__init__(f"variation {variation_key!r} is not in experiment {experiment_key!r}")


class InvalidTag(InvalidArgument):
    """An event tag the Optimizely SDK would not accept (NaN, infinity, a wrong kind)."""


class OutboxFull(ResourceExhausted):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"event outbox is full ({limit} events undelivered); retry after the endpoint drains it"
        )


class ActivationStoreUnavailable(Unavailable):
    """The shared activation store cannot be reached; decisions go on, attribution cannot."""

    def __init__(self, message: str = "the activation store (Redis) is unavailable") -> None:
        super().__init__(message)


class ActivationStoreFull(ActivationStoreUnavailable):
    """The host-local activation store's map is full: like an outage, decisions go on and
    attribution cannot, until entries expire or are evicted."""


class OverrideStoreUnavailable(Unavailable):
    """The shared store of forced variations and forced decisions cannot be reached: calls
    decide without them and say so; setting or reading one fails."""

    def __init__(self, message: str = "the override store (Redis) is unavailable") -> None:
        super().__init__(message)


class DatafileError(TrackdError):
    """The datafile cannot be used: not JSON, an unsupported version, a missing key."""
