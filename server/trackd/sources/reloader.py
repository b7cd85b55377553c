"""How new datafile bytes replace the live datafile.

A source (`trackd.sources`) only produces bytes; the `Reloader` parses them and, if they are
a valid datafile that differs from the live one, swaps it in and has what the new datafile
no longer has dropped. Anything invalid is logged with its reason and counted, and the
running datafile stays.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable

import structlog

from trackd.datafile.model import ProjectConfig
from trackd.datafile.parse import parse_datafile
from trackd.errors import DatafileError, Unavailable
from trackd.live import LiveConfig

log = structlog.get_logger("trackd.datafile")

DropStale = Callable[[ProjectConfig], Awaitable[int]]
"""`drop_stale(config)`: drop what `config` no longer runs; return activations dropped."""


class Reloader:
    """Offers new datafile bytes to the live config; counts what happened, for metrics.

    `drop_stale(config)` drops what a new datafile no longer runs and returns how many
    activations went (the daemon passes `Tracker.on_new_config`); it may raise Unavailable
    while a shared store is down, and is then retried in the background (as after any other
    error, which is logged with its traceback)."""

    def __init__(
        self,
        live: LiveConfig,
        drop_stale: DropStale,
        on_first_load: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._live = live
        self._drop = drop_stale
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
        if first and self._on_first_load is not None:
            # Serving before the drop: with millions of users in Redis, dropping SCANs the
            # whole keyspace for seconds, and deciding never needs it done (a stopped
            # experiment's activations are never read; a vanished variation's are ignored).
            await self._on_first_load()
        dropped = await self._drop_stale(config)
        self.reloads += 1
        log.info(
            "datafile_loaded",
            source=origin,
            revision=config.revision,
            previous_revision=previous,
            activations_dropped=dropped,
        )
        return True

    async def _drop_stale(self, config: ProjectConfig) -> int | None:
        """Drops what `config` no longer runs; with the shared store down, the new datafile is
        served anyway (decisions never read a stopped experiment's activations) and the drop
        is retried in the background until it succeeds or a newer datafile replaces it."""
        if self._retry is not None:
            self._retry.cancel()  # a newer datafile decides what is stale
            self._retry = None
        try:
            return await self._drop(config)
        except Unavailable as error:
            log.warning("activations_drop_deferred", revision=config.revision, error=str(error))
        except Exception:
            # Not an outage (a bug, or a Redis reply trackd.redis_down does not name): raised
            # from here it ended the source's run (datafile_source_failed) after the swap, and
            # the drop was never tried again.
            log.exception("activations_drop_failed", revision=config.revision)
        self._retry = asyncio.create_task(self._retry_drop(config), name="trackd-deferred-drop")
        return None

    async def _retry_drop(self, config: ProjectConfig) -> None:
        while True:
            await asyncio.sleep(self.retry_interval)
            try:
                dropped = await self._drop(config)
            except Unavailable:
                continue
            except Exception:
                # Caught so the retrying goes on: a task that died of it would leave the drop
                # undone, its error seen only when the task was collected, if ever.
                log.exception("activations_drop_failed", revision=config.revision)
                continue
            log.info("activations_dropped_late", revision=config.revision, dropped=dropped)
            self._retry = None
            return

    def close(self) -> None:
        """Stops a deferred drop (at shutdown)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None


__all__ = ["DropStale", "Reloader"]
