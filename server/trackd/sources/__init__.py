"""Where the datafile comes from, and how a new one replaces the live one.

A source (a watched file, a polled URL) only produces bytes; the `Reloader` parses them and,
if they are a valid datafile that differs from the live one, swaps it in and lets the
tracker drop what the new datafile no longer has. Anything invalid is logged with its reason
and counted, and the running datafile stays.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Protocol

import structlog

from trackd.config import Settings
from trackd.datafile.model import ProjectConfig
from trackd.datafile.parse import parse_datafile
from trackd.errors import DatafileError, Unavailable
from trackd.live import LiveConfig
from trackd.tracking import Tracker

log = structlog.get_logger("trackd.datafile")


class Reloader:
    """Offers new datafile bytes to the live config; counts what happened, for metrics."""

    def __init__(
        self,
        live: LiveConfig,
        tracker: Tracker,
        on_first_load: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._live = live
        self._tracker = tracker
        self._on_first_load = on_first_load
        self._digest: bytes | None = None
        self._rejected: bytes | None = None
        self._offering = asyncio.Lock()  # one reload at a time, in the order offered
        self._retry: asyncio.Task[None] | None = None  # a deferred drop of stale activations
        self.retry_interval = 1.0
        self.reloads = 0
        self.failures: Counter[str] = Counter()  # by reason: invalid, unreadable, fetch

    @property
    def loaded(self) -> bool:
        return self._live.loaded

    def prime(self, data: bytes) -> None:
        """Records the bytes the daemon started with, so seeing them again is no change."""
        self._digest = hashlib.sha256(data).digest()

    def failed(self, reason: str, origin: str, detail: str) -> None:
        self.failures[reason] += 1
        log.warning("datafile_reload_failed", reason=reason, source=origin, detail=detail)

    async def offer(self, data: bytes, origin: str) -> bool:
        """Swaps in `data` if it is a valid datafile that differs from the live one."""
        async with self._offering:
            return await self._offer(data, origin)

    async def _offer(self, data: bytes, origin: str) -> bool:
        digest = hashlib.sha256(data).digest()
        if digest in (self._digest, self._rejected):
            return False
        try:
            # Parsing a 10 MB datafile takes about a second of CPU: in a thread, the GIL's
            # switch interval lets the event loop keep answering RPCs meanwhile, where inline
            # parsing would stall every call for that second.
            config = await asyncio.to_thread(parse_datafile, data)
        except DatafileError as error:
            self._rejected = digest
            self.failed("invalid", origin, str(error))
            return False
        first = not self._live.loaded
        previous = None if first else self._live.config.revision
        self._digest, self._rejected = digest, None
        self._live.swap(config)
        dropped = await self._drop_stale(config)
        self.reloads += 1
        log.info(
            "datafile_loaded",
            source=origin,
            revision=config.revision,
            previous_revision=previous,
            activations_dropped=dropped,
        )
        if first and self._on_first_load is not None:
            await self._on_first_load()
        return True

    async def _drop_stale(self, config: ProjectConfig) -> int | None:
        """Drops what `config` no longer runs; with the shared store down, the new datafile is
        served anyway (decisions never read a stopped experiment's activations) and the drop
        is retried in the background until it succeeds or a newer datafile replaces it."""
        if self._retry is not None:
            self._retry.cancel()  # a newer datafile decides what is stale
            self._retry = None
        try:
            return await self._tracker.on_new_config(config)
        except Unavailable as error:
            log.warning("activations_drop_deferred", revision=config.revision, error=str(error))
            self._retry = asyncio.create_task(self._retry_drop(config), name="trackd-deferred-drop")
            return None

    async def _retry_drop(self, config: ProjectConfig) -> None:
        while True:
            await asyncio.sleep(self.retry_interval)
            try:
                dropped = await self._tracker.on_new_config(config)
            except Unavailable:
                continue
            log.info("activations_dropped_late", revision=config.revision, dropped=dropped)
            self._retry = None
            return

    def close(self) -> None:
        """Stops a deferred drop (at shutdown)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None


class DatafileSource(Protocol):
    """Produces datafile bytes: `initial` at start (None: wait for `run`), then changes."""

    description: str  # for logs; never holds a secret

    def initial(self) -> bytes | None: ...

    async def run(self, reloader: Reloader) -> None: ...


def bundled_datafile() -> bytes:
    return resources.files("trackd").joinpath("data/example_datafile.json").read_bytes()


def open_source(settings: Settings) -> DatafileSource | None:
    """The configured source; None serves the bundled example datafile, unwatched."""
    from trackd.sources.file import FileSource
    from trackd.sources.url import UrlSource

    if settings.datafile is not None:
        return FileSource(settings.datafile)
    url = settings.resolved_datafile_url
    if url:
        shown = url.replace(settings.sdk_key, redact(settings.sdk_key)) if settings.sdk_key else url
        return UrlSource(url, settings.datafile_poll_interval, description=shown)
    return None


def redact(secret: str) -> str:
    """Enough of a key to tell two apart in a log, not enough to use it."""
    return secret[:4] + "..." if len(secret) > 8 else "..."


def initial_config(source: DatafileSource | None) -> tuple[ProjectConfig | None, bytes | None]:
    """Parses what the daemon starts with; raises DatafileError naming the source."""
    data = bundled_datafile() if source is None else source.initial()
    if data is None:
        return None, None
    try:
        return parse_datafile(data), data
    except DatafileError as error:
        where = "bundled example" if source is None else source.description
        raise DatafileError(f"{where}: {error}") from error


__all__ = ["DatafileSource", "Reloader", "initial_config", "open_source"]
