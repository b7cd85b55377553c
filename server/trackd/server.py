"""The daemon's lifecycle: load -> start -> serve until a signal -> drain -> stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection

from trackd import values
from trackd.activation.memory import MemoryActivationStore
from trackd.activation.store import ActivationStore
from trackd.config import Settings
from trackd.datafile.model import ProjectConfig
from trackd.datafile.parse import parse_datafile
from trackd.errors import DatafileError
from trackd.events.dispatcher import Dispatcher
from trackd.events.outbox import Outbox
from trackd.events.sinks import open_sink
from trackd.forced import ForcedVariations
from trackd.live import LiveConfig
from trackd.servicer import TrackingServicer
from trackd.tracking import Tracker
from trackd.v1 import tracking_service_pb2 as pb
from trackd.v1 import tracking_service_pb2_grpc as pb_grpc

log = structlog.get_logger("trackd")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TrackingService"].full_name


def load_datafile(path: Path | None) -> ProjectConfig:
    """Parses the datafile, or the bundled example when none is given."""
    if path is None:
        text = resources.files("trackd").joinpath("data/example_datafile.json").read_bytes()
        return parse_datafile(text)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DatafileError(f"cannot read {path}: {error.strerror}") from error
    try:
        return parse_datafile(data)
    except DatafileError as error:
        raise DatafileError(f"{path}: {error}") from error


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Producers that idle between bursts keep their streams: allow client pings every
        # 10 s even with no call in flight, instead of answering them with GOAWAY.
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.max_concurrent_streams", max(100, settings.max_concurrent_streams)),
        ("grpc.so_reuseport", 0),
    ]


async def purge_expired(store: ActivationStore, every: float = 1.0) -> None:
    """Reclaims expired activations in the background; requests only ever sweep a few."""
    while True:
        await asyncio.sleep(every)
        try:
            await store.purge_expired()
        except Exception:  # a failed sweep must not end the sweeping
            log.exception("activation_purge_failed")


@dataclass
class Running:
    """A started daemon: where it listens and the parts tests may look at."""

    port: int
    tracker: Tracker
    outbox: Outbox
    dispatcher: Dispatcher
    server: grpc.aio.Server
    health: health_aio.HealthServicer


@contextlib.asynccontextmanager
async def running(
    settings: Settings, config: ProjectConfig | None = None
) -> AsyncIterator[Running]:
    """Starts every part, yields while serving, then shuts down in reverse order."""
    config = config or load_datafile(settings.datafile)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    outbox = Outbox(settings.data_dir / "outbox.sqlite3", max_events=settings.outbox_max_events)
    await outbox.open()
    dispatcher = Dispatcher(
        outbox,
        open_sink(settings.resolved_event_endpoint),
        batch_size=settings.event_batch_size,
        flush_interval=settings.event_flush_interval,
    )
    activations = MemoryActivationStore(
        ttl=settings.activation_ttl, max_entries=settings.activation_cache_size
    )
    tracker = Tracker(LiveConfig(config), activations, ForcedVariations(), outbox)
    server = grpc.aio.server(options=grpc_options(settings))
    limits = values.Limits(
        max_entries=settings.max_attributes,
        max_key_length=settings.max_key_length,
        max_user_id_length=settings.max_user_id_length,
        max_string_value_length=settings.max_string_value_length,
    )
    pb_grpc.add_TrackingServiceServicer_to_server(
        TrackingServicer(tracker, limits, settings.max_stream_batch), server
    )
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(settings.listen)
    if port == 0:
        await outbox.close()
        raise OSError(f"cannot listen on {settings.listen}")
    await server.start()
    dispatcher.start()
    purger = asyncio.create_task(purge_expired(activations), name="trackd-purge")
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = settings.listen.rpartition(":")[0]
    log.info(
        "started",
        listen=f"{host}:{port}",
        port=port,
        revision=config.revision,
        datafile=str(settings.datafile or "bundled example"),
        data_dir=str(settings.data_dir),
        event_endpoint=settings.resolved_event_endpoint,
    )
    try:
        yield Running(port, tracker, outbox, dispatcher, server, health_servicer)
    finally:
        await health_servicer.enter_graceful_shutdown()
        # Stop accepting, let in-flight RPCs finish within the grace period, then make one
        # last delivery attempt in what is left of it; the rest stays in the outbox.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.grace_period
        await server.stop(settings.grace_period)
        purger.cancel()
        await dispatcher.stop(deadline=deadline)
        await outbox.close()
        log.info("stopped")


async def serve(settings: Settings, config: ProjectConfig | None = None) -> None:
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
    async with running(settings, config):
        await stop.wait()
