"""The HTTP sink: POSTs Event API JSON with httpx, over a bounded connection pool."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Sequence

import httpx

from trackd.events.sinks import Delivery, Outcome, send_each

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
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        max_connections: int = 4,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"User-Agent": "trackd"},
        )

    async def send(self, body: bytes) -> Delivery:
        try:
            response = await self._client.post(self.url, content=body, headers=_HEADERS)
        except httpx.HTTPError as error:
            return Delivery(Outcome.RETRY, detail=f"{type(error).__name__}: {error}")
        return classify(response)

    async def send_all(self, bodies: Sequence[bytes]) -> list[Delivery]:
        # One request at a time: what was delivered is always a prefix, so nothing after a
        # failed batch goes out twice.
        return await send_each(self.send, bodies)

    async def aclose(self) -> None:
        await self._client.aclose()


__all__ = ["HttpSink", "classify", "retry_after_seconds"]
