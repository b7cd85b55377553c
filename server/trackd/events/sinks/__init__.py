"""Where delivered Event API batches go: an http(s) endpoint or a JSON-lines file.

A sink sends encoded batches and classifies each outcome; the dispatcher decides what to
do with them (retry with backoff, or dead-letter).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from trackd.events.endpoints import OPTIMIZELY, event_api_url


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # network error, 5xx, 408, 429: try again later
    REJECTED = "rejected"  # any other 4xx: retrying cannot help


@dataclass(frozen=True, slots=True)
class Delivery:
    outcome: Outcome
    status: int | None = None
    retry_after: float | None = None  # seconds the endpoint asked us to wait
    detail: str = ""


class Sink(Protocol):
    async def send(self, body: bytes) -> Delivery: ...

    async def send_all(self, bodies: Sequence[bytes]) -> list[Delivery]:
        """One Delivery per batch sent, in the batches' order. A sink may send them all
        (concurrently: the HTTP sink) or stop after the first batch not delivered (the
        file sink), leaving out the ones after it, which were not sent."""
        ...

    async def aclose(self) -> None: ...


def open_sink(
    endpoint: str,
    *,
    timeout: float = 10.0,
    max_connections: int = 4,
    region: Callable[[], str | None] | None = None,
) -> Sink:
    """`http(s)://...` posts JSON; `optimizely` posts to the Event API host of `region()`
    (the loaded datafile's; None while there is none); `file://PATH` appends one JSON line
    per batch."""
    if endpoint == OPTIMIZELY:
        if region is None:
            raise ValueError("the optimizely event endpoint needs the datafile's region")
        from trackd.events.sinks.http import HttpSink

        def url() -> str | None:
            current = region()
            return None if current is None else event_api_url(current)

        return HttpSink(url, timeout=timeout, max_connections=max_connections)
    if endpoint.startswith(("http://", "https://")):
        from trackd.events.sinks.http import HttpSink

        return HttpSink(endpoint, timeout=timeout, max_connections=max_connections)
    if endpoint.startswith("file://"):
        from trackd.events.sinks.file import FileSink

        return FileSink(endpoint.removeprefix("file://"))
    raise ValueError(
        f"event endpoint {endpoint!r}: expected http(s)://..., {OPTIMIZELY} or file://PATH"
    )


__all__ = ["Delivery", "Outcome", "Sink", "open_sink"]
