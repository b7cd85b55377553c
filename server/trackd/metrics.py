"""Prometheus metrics: RPCs observed by the interceptor, everything else read from the parts'
own counters at scrape time, served at http://--metrics-listen/metrics.

Each daemon has its own registry (tests run several in one process), and the scrape endpoint
is a few lines of asyncio so that reading the outbox's and the store's async stats needs no
thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as render
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from trackd.activation.store import ActivationStats, ActivationStore
from trackd.events.dispatcher import Dispatcher
from trackd.events.outbox import Outbox, OutboxStats
from trackd.live import LiveConfig

log = structlog.get_logger("trackd.metrics")

# Unary RPCs take well under a millisecond; streams last as long as their callers keep them.
RPC_BUCKETS = (
    *(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)


class RpcMetrics:
    """Counts and latencies by service, method and status code; fed by the interceptor."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("service", "method", "code")
        self.handled = Counter(
            "trackd_rpc_handled", "RPCs completed, by status code.", labels, registry=registry
        )
        self.duration = Histogram(
            "trackd_rpc_duration_seconds",
            "Time from the call's start to its status.",
            labels,
            buckets=RPC_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    def observe(self, service: str, method: str, code: str, seconds: float) -> None:
        key = (service, method, code)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.handled.labels(*key),
                self.duration.labels(*key),
            )
        children[0].inc()
        children[1].observe(seconds)


class HttpMetrics:
    """Requests to the HTTP port (--http-listen) by route and status; fed by its server."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter(
            "trackd_http_requests",
            "HTTP requests answered, by route (a known path, else `other`) and status.",
            ("route", "status"),
            registry=registry,
        )
        self.duration = Histogram(
            "trackd_http_request_duration_seconds",
            "Time from an HTTP request's start to the end of its answer.",
            ("route",),
            buckets=RPC_BUCKETS,
            registry=registry,
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.handled.labels(route, str(status)).inc()
        self.duration.labels(route).observe(seconds)


class StreamCounters(Protocol):
    open_streams: int
    rejected_streams: int
    auth_failures: Tally[str]


class ReloadCounters(Protocol):
    reloads: int
    failures: Tally[str]


class DegradedCounters(Protocol):
    """What went on while the shared activation store was unreachable."""

    degraded_activations: int
    unattributed_tracks: int


class NotificationCounters(Protocol):
    dropped: int  # notifications lost by listeners that read too slowly


@dataclass
class Parts:
    live: LiveConfig
    activations: ActivationStore
    outbox: Outbox
    dispatcher: Dispatcher
    reloader: ReloadCounters
    rpcs: StreamCounters
    tracker: DegradedCounters
    notifier: NotificationCounters


class DaemonCollector(Collector):
    """Exposes the parts' counters; `refresh()` reads the async ones before each scrape."""

    def __init__(self, parts: Parts) -> None:
        self._parts = parts
        self._outbox: OutboxStats | None = None
        self._activations: ActivationStats | None = None

    async def refresh(self) -> None:
        self._outbox = await self._parts.outbox.stats()
        self._activations = await self._parts.activations.stats()

    def describe(self) -> list[Metric]:
        return []  # no name checks at registration: collect() needs refresh() first

    def collect(self) -> Iterator[Metric]:
        yield from self._datafile()
        yield from self._cache()
        yield from self._events()
        yield from self._rpcs()

    def _datafile(self) -> Iterator[Metric]:
        parts = self._parts
        info = GaugeMetricFamily(
            "trackd_datafile_info", "The live datafile (1), by revision.", labels=["revision"]
        )
        loaded = GaugeMetricFamily(
            "trackd_datafile_loaded_timestamp_seconds", "When the live datafile was loaded."
        )
        if parts.live.loaded:
            snapshot = parts.live.snapshot
            info.add_metric([snapshot.config.revision], 1)
            loaded.add_metric([], snapshot.loaded_at)
        yield info
        yield loaded
        yield CounterMetricFamily(
            "trackd_datafile_reloads", "New datafiles swapped in.", parts.reloader.reloads
        )
        failures = CounterMetricFamily(
            "trackd_datafile_reload_failures",
            "New datafiles kept out (invalid) or not obtained (unreadable, fetch), by reason.",
            labels=["reason"],
        )
        for reason in ("invalid", "unreadable", "fetch"):
            failures.add_metric([reason], parts.reloader.failures[reason])
        yield failures

    def _cache(self) -> Iterator[Metric]:
        stats = self._activations
        if stats is None:
            return
        yield GaugeMetricFamily(
            "trackd_activation_cache_entries", "Activations held.", value=stats.entries
        )
        for name, value, meaning in (
            ("hits", stats.hits, "Lookups that found a live activation."),
            ("misses", stats.misses, "Lookups that found none."),
            ("evictions", stats.evictions, "Live activations evicted by the size bound."),
            ("expiries", stats.expiries, "Activations removed when their TTL passed."),
            ("dropped", stats.dropped, "Activations dropped by a datafile change."),
        ):
            yield CounterMetricFamily(f"trackd_activation_cache_{name}", meaning, value)
        yield GaugeMetricFamily(
            "trackd_activation_store_up",
            "1 while the activation store answers; 0 while a shared one (Redis) cannot be reached.",
            value=int(stats.available),
        )
        tracker = self._parts.tracker
        yield CounterMetricFamily(
            "trackd_activations_degraded",
            "Activate and Decide calls answered with attribution_degraded: the activation "
            "store unreachable (Redis) or full (LMDB), or the override store unreachable "
            "(decided exactly, as the call's attribution_degraded says).",
            tracker.degraded_activations,
        )
        yield CounterMetricFamily(
            "trackd_conversions_attribution_unknown",
            "Conversions recorded without attribution because the activation store could not "
            "be read (Redis unreachable or its connection pool busy).",
            tracker.unattributed_tracks,
        )

    def _events(self) -> Iterator[Metric]:
        dispatcher = self._parts.dispatcher
        stats = self._outbox
        if stats is not None:
            yield GaugeMetricFamily(
                "trackd_outbox_depth_events", "Undelivered events.", value=stats.depth_events
            )
            yield GaugeMetricFamily(
                "trackd_outbox_oldest_age_seconds",
                "Age of the oldest undelivered event (0 when none).",
                value=stats.oldest_age_s or 0.0,
            )
            yield CounterMetricFamily(
                "trackd_events_dead_lettered",
                "Events the endpoint refused for good, all time.",
                stats.dead_lettered_events,
            )
            yield CounterMetricFamily(
                "trackd_stream_batches_duplicate",
                "TrackStream batches whose (producer_id, sequence) was already committed:"
                " acknowledged again, nothing stored; since start.",
                stats.duplicate_batches,
            )
        for name, value, meaning in (
            ("events_delivered", dispatcher.delivered_events, "Events delivered since start."),
            ("delivery_batches", dispatcher.batches_sent, "Batches delivered since start."),
            ("delivery_retries", dispatcher.retries, "Delivery attempts retried since start."),
        ):
            yield CounterMetricFamily(f"trackd_{name}", meaning, value)

    def _rpcs(self) -> Iterator[Metric]:
        rpcs = self._parts.rpcs
        yield GaugeMetricFamily(
            "trackd_streams_open",
            "TrackStream and WatchConfig calls and Agent event streams open.",
            rpcs.open_streams,
        )
        yield CounterMetricFamily(
            "trackd_streams_rejected",
            "Streams answered RESOURCE_EXHAUSTED by --max-concurrent-streams.",
            rpcs.rejected_streams,
        )
        failures = CounterMetricFamily(
            "trackd_auth_failures",
            "Calls refused by token auth, by verdict.",
            labels=["verdict"],
        )
        for verdict in ("missing", "unknown", "out_of_scope"):
            failures.add_metric([verdict], rpcs.auth_failures[verdict])
        yield failures
        yield CounterMetricFamily(
            "trackd_notifications_dropped",
            "Notifications an Agent event stream lost because its reader fell behind.",
            self._parts.notifier.dropped,
        )


class MetricsServer:
    """GET /metrics over HTTP/1.1, one request per connection."""

    def __init__(self, registry: CollectorRegistry, refresh: Callable[[], Awaitable[None]]):
        self._registry = registry
        self._refresh = refresh
        self._server: asyncio.Server | None = None

    async def start(self, listen: str) -> int:
        host, _, port = listen.rpartition(":")
        self._server = await asyncio.start_server(self._serve, host.strip("[]"), int(port))
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = (await reader.readline()).decode("latin-1").split()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                status, kind, body = await self._answer(request)
                head = (
                    f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
                writer.write(head.encode("latin-1"))
                if request[:1] != ["HEAD"]:
                    writer.write(body)
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, request: list[str]) -> tuple[str, str, bytes]:
        text = "text/plain; charset=utf-8"
        if len(request) < 2 or request[0] not in ("GET", "HEAD"):
            return "405 Method Not Allowed", text, b"GET /metrics\n"
        path = request[1].partition("?")[0]
        if path == "/metrics":
            try:
                await self._refresh()
            except Exception:  # a scrape still shows the RPC metrics
                log.exception("metrics_refresh_failed")
            return "200 OK", CONTENT_TYPE_LATEST, render(self._registry)
        if path == "/":
            return "200 OK", text, b"trackd: metrics at /metrics\n"
        return "404 Not Found", text, b"not found; metrics are at /metrics\n"
