"""trackd_client: the Python client of trackd, the gRPC experiment-tracking daemon.

from trackd_client import Client

with Client("127.0.0.1:50051") as client:
    variation = client.activate("my_experiment", "user123", {"device": "iPhone"})
    client.track("my_conversion", "user123", {"device": "iPhone"}, {"revenue": 4200})
"""

from trackd_client._types import Attribution, DecideOption, Decision, VariableTypeError
from trackd_client._values import Scalar, to_value, to_value_map
from trackd_client.client import DEFAULT_TIMEOUT, Client
from trackd_client.errors import (
    CancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    TrackdError,
    UnavailableError,
)
from trackd_client.producer import Producer, ProducerStats, Rejection

__all__ = [
    "DEFAULT_TIMEOUT",
    "Attribution",
    "CancelledError",
    "Client",
    "DeadlineExceededError",
    "DecideOption",
    "Decision",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "Producer",
    "ProducerStats",
    "Rejection",
    "ResourceExhaustedError",
    "Scalar",
    "TrackdError",
    "UnavailableError",
    "VariableTypeError",
    "to_value",
    "to_value_map",
]
__version__ = "0.1.0"
