"""trackd: a gRPC experiment-tracking daemon."""

__version__ = "0.1.0"
