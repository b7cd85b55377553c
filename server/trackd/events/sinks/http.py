"""The HTTP sink: POSTs Event API JSON with httpx, over a bounded connection pool.

A round's batches are POSTed concurrently, as many at a time as the pool has connections:
one at a time, a daemon toward logx.optimizely.com (tens of milliseconds away) delivered
about `--event-batch-size` events per round trip, far below what it accepts.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable, Sequence

import httpx

from trackd.events.sinks import Delivery, Outcome

_RETRY_STATUSES = frozenset({408, 429})
_HEADERS = {"Content-Type": "application/json"}


def retry_after_seconds(header: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date; None if absent/invalid."""
    if not header:
        return None
    text = header.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def classify(response: httpx.Response) -> Delivery:
    status = response.status_code
    if 200 <= status < 300:
        return Delivery(Outcome.DELIVERED, status)
    detail = response.text[:200]
    if 400 <= status < 500 and status not in _RETRY_STATUSES:
        return Delivery(Outcome.REJECTED, status, detail=detail)
    # 5xx, 408, 429, and anything unexpected (1xx/3xx): the endpoint may recover.
    return Delivery(
        Outcome.RETRY, status, retry_after_seconds(response.headers.get("Retry-After")), detail
    )


class HttpSink:
    """POSTs to `url`, or to what `url()` gives at each request (None: not known yet, so the
    batch waits and is retried, as for an unreachable endpoint)."""

    def __init__(
        self,
        url: str | Callable[[], str | None],
        *,
        timeout: float = 10.0,
        max_connections: int = 4,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        # Requests wait here rather than in httpx's pool, whose wait counts against the
        # timeout: a round larger than the pool must not fail for queueing alone.
        self._slots = asyncio.Semaphore(max_connections)
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"User-Agent": "trackd"},
        )

    def current_url(self) -> str | None:
        return self.url if isinstance(self.url, str) else self.url()

    async def send(self, body: bytes) -> Delivery:
        url = self.current_url()
        if url is None:
            return Delivery(Outcome.RETRY, detail="the event endpoint is not known yet")
        try:
            response = await self._client.post(url, content=body, headers=_HEADERS)
        except httpx.HTTPError as error:
            return Delivery(Outcome.RETRY, detail=f"{type(error).__name__}: {error}")
        return classify(response)

    async def send_all(self, bodies: Sequence[bytes]) -> list[Delivery]:
        # Every batch is sent, concurrently; the dispatcher goes through the outcomes in
        # order, retrying a failed batch before it acknowledges the ones after it, so a
        # batch delivered after a failed one is not sent twice.
        return list(await asyncio.gather(*(self._send_in_slot(body) for body in bodies)))

    async def _send_in_slot(self, body: bytes) -> Delivery:
        async with self._slots:
            return await self.send(body)

    async def aclose(self) -> None:
        await self._client.aclose()


__all__ = ["HttpSink", "classify", "retry_after_seconds"]
