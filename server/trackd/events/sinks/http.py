"""The HTTP sink: POSTs Event API JSON with aiohttp, over a bounded connection pool.

A round's batches are POSTed concurrently, as many at a time as the pool has connections:
one at a time, a daemon toward logx.optimizely.com (tens of milliseconds away) delivered
about `--event-batch-size` events per round trip, far below what it accepts.

aiohttp rather than httpx (which the datafile poller uses): a POST cost the event loop
~210 us of CPU with aiohttp against ~870-1,400 us with httpx (2026-12-07, 2 cores, loopback),
and delivery runs on the loop that answers calls, once per batch of events. As httpx did,
the sink trusts certifi's CA bundle (or SSL_CERT_FILE's, SSL_CERT_DIR's), honours HTTP(S)_PROXY,
ALL_PROXY and NO_PROXY, and follows no redirect (a 3xx is retried, like any answer it cannot
act on).
"""

from __future__ import annotations

import asyncio
import email.utils
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence

import aiohttp
import httpx

from trackd.events.sinks import Delivery, Outcome

_RETRY_STATUSES = frozenset({408, 429})
_HEADERS = {"Content-Type": "application/json", "User-Agent": "trackd"}
_DETAIL_BYTES = 200


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


def classify(status: int, headers: Mapping[str, str], body: bytes) -> Delivery:
    """What an answer means for its batch."""
    if 200 <= status < 300:
        return Delivery(Outcome.DELIVERED, status)
    detail = body[:_DETAIL_BYTES].decode("utf-8", errors="replace")
    if 400 <= status < 500 and status not in _RETRY_STATUSES:
        return Delivery(Outcome.REJECTED, status, detail=detail)
    # 5xx, 408, 429, and anything unexpected (1xx/3xx): the endpoint may recover.
    return Delivery(Outcome.RETRY, status, retry_after_seconds(headers.get("Retry-After")), detail)


class HttpSink:
    """POSTs to `url`, or to what `url()` gives at each request (None: not known yet, so the
    batch waits and is retried, as for an unreachable endpoint)."""

    def __init__(
        self,
        url: str | Callable[[], str | None],
        *,
        timeout: float = 10.0,
        max_connections: int = 4,
    ) -> None:
        self.url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_connections = max_connections
        # Requests wait here rather than in the connector's pool, whose wait counts against
        # the timeout: a round larger than the pool must not fail for queueing alone.
        self._slots = asyncio.Semaphore(max_connections)
        # httpx's own context, so both HTTP clients trust the same CAs: SSL_CERT_FILE or
        # SSL_CERT_DIR when set (a TLS-inspecting egress proxy, a private CA), else certifi's
        # bundle; the datafile poller (httpx) reads them, as this sink did. Made here, not
        # with the session, so that a file that cannot be read stops the daemon at start.
        try:
            self._tls = httpx.create_ssl_context()
        except OSError as error:
            raise OSError(f"the event sink's CAs (SSL_CERT_FILE, SSL_CERT_DIR): {error}") from None
        self._session: aiohttp.ClientSession | None = None  # made on the loop, at first use
        self._proxies: dict[str, str | None] = {}  # by URL: the environment's, read once

    def current_url(self) -> str | None:
        return self.url if isinstance(self.url, str) else self.url()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=self._tls),
                timeout=self._timeout,
                headers=_HEADERS,
                # The proxy is the sink's own lookup (`_proxy`): aiohttp's trust_env reads
                # the environment and ~/.netrc again on every request, on a worker thread.
                trust_env=False,
            )
        return self._session

    def _proxy(self, url: str) -> str | None:
        """HTTP(S)_PROXY, ALL_PROXY and NO_PROXY for `url`, read once per URL."""
        if url not in self._proxies:
            self._proxies[url] = environment_proxy(url)
        return self._proxies[url]

    async def send(self, body: bytes) -> Delivery:
        url = self.current_url()
        if url is None:
            return Delivery(Outcome.RETRY, detail="the event endpoint is not known yet")
        try:
            async with self._client().post(
                url, data=body, allow_redirects=False, proxy=self._proxy(url)
            ) as response:
                status = response.status
                # Only a failure's text is kept (its first bytes, in the Delivery's detail);
                # a success's body is read to free the connection for the next batch.
                answer = await response.read()
                return classify(status, response.headers, answer)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            # ValueError: a URL aiohttp cannot request (from a config that passed validation).
            return Delivery(Outcome.RETRY, detail=f"{type(error).__name__}: {error}")

    async def send_all(self, bodies: Sequence[bytes]) -> list[Delivery]:
        # Every batch is sent, concurrently; the dispatcher goes through the outcomes in
        # order, retrying a failed batch before it acknowledges the ones after it, so a
        # batch delivered after a failed one is not sent twice.
        return list(await asyncio.gather(*(self._send_in_slot(body) for body in bodies)))

    async def _send_in_slot(self, body: bytes) -> Delivery:
        async with self._slots:
            return await self.send(body)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (as httpx's trust_env read it), or None."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    # `egress:3128`, without a scheme, is an http:// proxy to httpx and curl; aiohttp refuses
    # it as an invalid URL, which would leave every batch in the outbox.
    return f"http://{proxy}" if proxy and "://" not in proxy else proxy


__all__ = ["HttpSink", "classify", "environment_proxy", "retry_after_seconds"]
