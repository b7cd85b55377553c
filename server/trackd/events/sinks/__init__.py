"""Where delivered Event API batches go: an http(s) endpoint or a JSON-lines file.

A sink sends encoded batches and classifies each outcome; the dispatcher decides what to
do with them (retry with backoff, or dead-letter).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


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
        """Sends in order and stops after the first batch not delivered: one Delivery per
        batch sent, so the ones after a failure are left out (and were not sent)."""
        ...

    async def aclose(self) -> None: ...


async def send_each(
    send: Callable[[bytes], Awaitable[Delivery]], bodies: Sequence[bytes]
) -> list[Delivery]:
    """`Sink.send_all` for a sink that sends one batch at a time."""
    deliveries: list[Delivery] = []
    for body in bodies:
        delivery = await send(body)
        deliveries.append(delivery)
        if delivery.outcome is not Outcome.DELIVERED:
            break
    return deliveries


def open_sink(endpoint: str, *, timeout: float = 10.0, max_connections: int = 4) -> Sink:
    """`http(s)://...` posts JSON; `file://PATH` appends one JSON line per batch."""
    if endpoint.startswith(("http://", "https://")):
        from trackd.events.sinks.http import HttpSink

        return HttpSink(endpoint, timeout=timeout, max_connections=max_connections)
    if endpoint.startswith("file://"):
        from trackd.events.sinks.file import FileSink

        return FileSink(endpoint.removeprefix("file://"))
    raise ValueError(f"event endpoint {endpoint!r}: expected http(s)://... or file://PATH")


sink_for = open_sink


__all__ = ["Delivery", "Outcome", "Sink", "open_sink", "send_each", "sink_for"]
