"""The daemon's lifecycle: prepare -> start -> serve until a signal -> drain -> stop.

`prepare` does every side effect that can fail on a user's mistake (reading the datafile,
certificates, tokens) before anything starts, so such a mistake is one line and exit code 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry

from trackd import heap, metrics
from trackd.activation.memory import MemoryActivationStore
from trackd.activation.store import ActivationStore
from trackd.background import cancel_and_wait
from trackd.config import Settings, SettingsError
from trackd.datafile.model import ProjectConfig
from trackd.event_loop import running_loop_name
from trackd.events import records
from trackd.events.dispatcher import Dispatcher
from trackd.events.endpoints import OPTIMIZELY, event_api_url
from trackd.events.fleet import FleetResults
from trackd.events.outbox import Outbox
from trackd.events.results import sqlite_problem
from trackd.events.sinks import Sink, open_sink
from trackd.http_server import HttpServer
from trackd.live import LiveConfig
from trackd.overrides import MemoryOverrideStore, OverrideStore
from trackd.rpc import tls
from trackd.rpc.auth import Tokens
from trackd.rpc.endpoint import Endpoint, open_endpoint
from trackd.sources import DatafileSource, Reloader, initial_config, open_source
from trackd.tracking import Tracker

log = structlog.get_logger("trackd")

LOOPBACK_NAMES = ("localhost", "ip6-localhost")


@dataclass(frozen=True)
class Prepared:
    source: DatafileSource | None
    config: ProjectConfig | None
    data: bytes | None
    credentials: tls.ServerCredentials | None
    http_tls: ssl.SSLContext | None  # the HTTP port's, when it is on and TLS is set
    tokens: Tokens | None


def prepare(settings: Settings) -> Prepared:
    """Reads what the settings name; raises DatafileError or SettingsError, one line each."""
    problem = sqlite_problem()
    if problem:
        raise SettingsError([problem])
    source = open_source(settings)
    config, data = initial_config(source)
    credentials = tls.server_credentials(settings)
    http_tls = tls.http_context(settings) if settings.http_listen else None
    tokens = Tokens.load(settings.auth_tokens) if settings.auth_tokens else None
    return Prepared(source, config, data, credentials, http_tls, tokens)


def open_activation_store(
    settings: Settings,
) -> tuple[ActivationStore, FleetResults | None]:
    """The activation store the settings name and, when it is shared (Redis), the fleet-wide
    results that travel through the same Redis."""
    kind = settings.resolved_activation_store
    if kind == "memory":
        store = MemoryActivationStore(
            ttl=settings.activation_ttl, max_entries=settings.activation_cache_size
        )
        return store, None
    if kind == "local":
        from trackd.activation.local import LocalActivationStore  # only when asked for

        local = LocalActivationStore(
            settings.resolved_activation_dir,
            ttl=settings.activation_ttl,
            max_entries=settings.activation_cache_size,
        )
        return local, None
    from trackd.activation.redis import RedisActivationStore  # only when asked for

    shared = RedisActivationStore.from_url(
        settings.activation_store,
        max_connections=settings.redis_max_connections,
        ttl=settings.activation_ttl,
        prefix=settings.redis_key_prefix,
    )
    fleet = FleetResults(shared.client, outbox_path(settings), prefix=settings.redis_key_prefix)
    return shared, fleet


def open_override_store(settings: Settings, activations: ActivationStore) -> OverrideStore:
    """Forced variations and forced decisions where the activations are, so every worker or
    replica sharing those honours an override set through any of them."""
    if isinstance(activations, MemoryActivationStore):
        return MemoryOverrideStore(ttl=settings.override_ttl)
    from trackd.activation.redis import RedisActivationStore  # only when asked for

    if isinstance(activations, RedisActivationStore):
        from trackd.overrides.redis import RedisOverrideStore

        return RedisOverrideStore(
            activations.client, ttl=settings.override_ttl, prefix=settings.redis_key_prefix
        )
    from trackd.overrides.local import LocalOverrideStore

    # Inside the activations' directory: every worker opens that one (not its own data dir).
    overrides_dir = settings.resolved_activation_dir / "overrides"
    return LocalOverrideStore(overrides_dir, ttl=settings.override_ttl)


def event_sink(settings: Settings, live: LiveConfig) -> Sink:
    """The sink of --event-endpoint; `optimizely` follows the live datafile's region."""

    def region() -> str | None:
        return live.config.region if live.loaded else None

    return open_sink(
        settings.resolved_event_endpoint,
        max_connections=settings.event_max_connections,
        region=region,
    )


def outbox_path(settings: Settings) -> Path:
    return settings.data_dir / "outbox.sqlite3"


def events_destination(settings: Settings, live: LiveConfig) -> str:
    """Where delivered events go, for the start-up line: a file as an absolute path (a
    relative --data-dir is the working directory's), an endpoint as the URL POSTed to."""
    endpoint = settings.resolved_event_endpoint
    if endpoint.startswith("file://"):
        return f"file://{Path(endpoint.removeprefix('file://')).resolve()}"
    if endpoint == OPTIMIZELY:
        if live.loaded:
            return event_api_url(live.config.region)
        return f"{OPTIMIZELY} (the Event API host of the datafile's region, once loaded)"
    return endpoint


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def purge_expired(store: ActivationStore, every: float = 1.0) -> None:
    """Reclaims expired activations in the background; requests only ever sweep a few."""
    while True:
        await asyncio.sleep(every)
        try:
            await store.purge_expired()
        except Exception:  # a failed sweep must not end the sweeping
            log.exception("activation_purge_failed")


async def watch_source(source: DatafileSource, reloader: Reloader) -> None:
    """Runs the source for the daemon's life; a bug in it is logged, then it starts again."""
    while True:
        try:
            await source.run(reloader)
        except Exception:
            log.exception("datafile_source_failed", source=source.description)
            await asyncio.sleep(1.0)


def store_description(settings: Settings) -> str:
    """The store for the log, without a password the URL may carry; the local one with its
    directory."""
    store = settings.resolved_activation_store
    if store == "local":
        return f"local:{settings.resolved_activation_dir.resolve()}"
    scheme, sep, rest = store.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return store


@dataclass
class Running:
    """A started daemon: where it listens and the parts tests may look at. Only the parts of
    a port that is off are None: the metrics ones (--metrics-listen) and the HTTP ones
    (--http-listen)."""

    port: int
    http_server: HttpServer | None
    tracker: Tracker
    outbox: Outbox
    dispatcher: Dispatcher
    endpoint: Endpoint
    live: LiveConfig
    reloader: Reloader
    metrics_port: int | None
    registry: CollectorRegistry | None
    metrics_server: metrics.MetricsServer | None
    tasks: list[asyncio.Task[None]]

    @property
    def http_port(self) -> int | None:
        return self.http_server.port if self.http_server is not None else None


@contextlib.asynccontextmanager
async def running(settings: Settings, prepared: Prepared | None = None) -> AsyncIterator[Running]:
    """Starts every part, yields while serving, then shuts down in reverse order."""
    prepared = prepared or prepare(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    activations, fleet = open_activation_store(settings)
    overrides = open_override_store(settings, activations)
    outbox = Outbox(
        outbox_path(settings),
        max_events=settings.outbox_max_events,
        synchronous="NORMAL" if settings.outbox_sync == "normal" else "FULL",
        dedup_window=settings.dedup_window,
        results_observer=fleet.observe if fleet is not None else None,
    )

    async def close_storage() -> None:
        if fleet is not None:
            await fleet.close()
        await outbox.close()
        await overrides.close()
        await activations.close()

    try:
        started = await _start(settings, prepared, activations, overrides, fleet, outbox)
    except BaseException:
        # Whatever failed (the outbox locked by another process, a port taken), nothing
        # opened so far (Redis connections, the fleet publisher) outlives it.
        await close_storage()
        raise
    try:
        yield started
    finally:
        await _stop(settings, started)
        await close_storage()
        log.info("stopped")


async def _start(
    settings: Settings,
    prepared: Prepared,
    activations: ActivationStore,
    overrides: OverrideStore,
    fleet: FleetResults | None,
    outbox: Outbox,
) -> Running:
    await outbox.open()
    if fleet is not None:
        await fleet.start()
    live = LiveConfig(prepared.config)
    dispatcher = Dispatcher(
        outbox,
        event_sink(settings, live),
        batch_size=settings.event_batch_size,
        flush_interval=settings.event_flush_interval,
        encoder_process=True,
    )
    tracker = Tracker(
        live,
        activations,
        overrides,
        outbox,
        fleet=fleet,
        default_decide_options=settings.decide_options,
    )
    registry = CollectorRegistry(auto_describe=False) if settings.metrics_listen else None
    endpoint = open_endpoint(
        settings,
        tracker,
        live,
        prepared.credentials,
        prepared.tokens,
        metrics.RpcMetrics(registry) if registry else None,
    )

    async def now_serving() -> None:
        await endpoint.set_serving(True)

    reloader = Reloader(live, tracker.on_new_config, on_first_load=now_serving)
    if prepared.data is not None:
        reloader.prime(prepared.data)
    port = endpoint.port
    http_server: HttpServer | None = None
    if settings.http_listen:
        from trackd.rpc.http_endpoint import open_http_endpoint  # only when asked for

        http_server = open_http_endpoint(
            settings, endpoint, live, prepared.http_tls, registry, tracker.notifier
        )
    metrics_server: metrics.MetricsServer | None = None
    metrics_port: int | None = None
    if registry is not None:
        collector = metrics.DaemonCollector(
            metrics.Parts(
                live,
                activations,
                outbox,
                dispatcher,
                reloader,
                endpoint.interceptor,
                tracker,
                tracker.notifier,
            )
        )
        registry.register(collector)
        metrics_server = metrics.MetricsServer(registry, collector.refresh)
        try:
            metrics_port = await metrics_server.start(settings.metrics_listen)
        except OSError as error:
            raise OSError(
                f"cannot listen on {settings.metrics_listen} for metrics: {error.strerror}"
            ) from error
    await endpoint.start()
    if http_server is not None:
        await http_server.start()
    dispatcher.start()
    tasks = [asyncio.create_task(purge_expired(activations), name="trackd-purge")]
    if prepared.source is not None:
        tasks.append(
            asyncio.create_task(watch_source(prepared.source, reloader), name="trackd-datafile")
        )
    await endpoint.set_serving(live.loaded)
    host = settings.listen.rpartition(":")[0]
    log.info(
        "started",
        listen=f"{host}:{port}",
        port=port,
        http=f"{settings.http_listen.rpartition(':')[0]}:{http_server.port}"
        if http_server
        else None,
        http_port=http_server.port if http_server else None,
        revision=live.config.revision if live.loaded else None,
        datafile=prepared.source.description if prepared.source else "bundled example",
        data_dir=str(settings.data_dir.resolve()),
        outbox=str(outbox_path(settings).resolve()),
        outbox_sync=settings.outbox_sync,
        event_loop=running_loop_name(),
        activation_store=store_description(settings),
        event_endpoint=events_destination(settings, live),
        tls=prepared.credentials is not None,
        mutual_tls=settings.tls_client_ca is not None,
        auth=prepared.tokens is not None,
        metrics=f"{settings.metrics_listen.rpartition(':')[0]}:{metrics_port}"
        if metrics_port
        else None,
    )
    missing = [
        name
        for name, present in (("TLS", prepared.credentials), ("token auth", prepared.tokens))
        if present is None
    ]
    for listen in (settings.listen, settings.http_listen):  # the HTTP port has the same both
        if listen and not is_loopback(listen.rpartition(":")[0]) and missing:
            log.warning(
                "listening_beyond_loopback",
                listen=listen,
                missing=missing,
                advice="set --tls-cert/--tls-key and --auth-tokens, or listen on 127.0.0.1",
            )
    return Running(
        port=port,
        http_server=http_server,
        tracker=tracker,
        outbox=outbox,
        dispatcher=dispatcher,
        endpoint=endpoint,
        live=live,
        reloader=reloader,
        metrics_port=metrics_port,
        registry=registry,
        metrics_server=metrics_server,
        tasks=tasks,
    )


async def _stop(settings: Settings, running: Running) -> None:
    await running.endpoint.begin_shutdown()
    if running.http_server is not None:
        running.http_server.begin_shutdown()
    # Stop accepting, let in-flight RPCs finish within the grace period, then make one last
    # delivery attempt in what is left of it; the rest stays in the outbox.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.grace_period
    # Each loop logs its own errors and goes on, but one that failed anyway must not cut the
    # drain short (before 2026-12-03 these tasks were cancelled and never awaited).
    stopped = (cancel_and_wait(task) for task in running.tasks)
    for outcome in await asyncio.gather(*stopped, return_exceptions=True):
        if isinstance(outcome, Exception):
            log.error("background_task_failed", error=f"{type(outcome).__name__}: {outcome}")
    await running.reloader.close()
    ports = [running.endpoint.stop(settings.grace_period)]
    if running.http_server is not None:
        ports.append(running.http_server.stop())
    await asyncio.gather(*ports)  # each within the same grace period, not one after the other
    if running.metrics_server is not None:
        await running.metrics_server.close()
    await running.dispatcher.stop(deadline=deadline)


async def serve(settings: Settings, prepared: Prepared | None = None) -> None:
    """Runs until SIGTERM or SIGINT; a second signal cancels the drain."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("forced_exit", signal=signal.Signals(signum).name)
            if main_task is not None:
                main_task.cancel()
            return
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):  # kill <pid>, and Ctrl-C
        loop.add_signal_handler(signum, on_signal, signum)
    async with running(settings, prepared) as daemon:
        settling = asyncio.create_task(
            heap.settle_on_swap(daemon.tracker.live, forget=records.forget_snapshots),
            name="trackd-heap",
        )
        try:
            await stop.wait()
        finally:
            settling.cancel()
