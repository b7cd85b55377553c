"""How new datafile bytes replace the live datafile.

A source (`trackd.sources`) only produces bytes; the `Reloader` parses them and, if they are
a valid datafile that differs from the live one, swaps it in and has what the new datafile
no longer has dropped, in the background. Anything invalid is logged with its reason and
counted, and the running datafile stays.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import structlog

from trackd.background import cancel_and_wait
from trackd.datafile.model import ProjectConfig
from trackd.datafile.parse import parse_datafile
from trackd.errors import DatafileError, Unavailable
from trackd.live import LiveConfig

log = structlog.get_logger("trackd.datafile")

DropStale = Callable[[ProjectConfig], Awaitable[int]]
"""`drop_stale(config)`: drop what `config` no longer runs; return activations dropped."""


class _Drop(NamedTuple):
    """The drop of stale activations under way (or done) for the datafile `revision`."""

    revision: str
    task: asyncio.Task[None]


class Reloader:
    """Offers new datafile bytes to the live config; counts what happened, for metrics.

    `drop_stale(config)` drops what a new datafile no longer runs and returns how many
    activations went (the daemon passes `Tracker.on_new_config`). It runs as a background
    task once the datafile is served, so a source's next offer never waits for it, and a
    newer datafile cancels it and starts its own: `drop_stale(newest)` drops every activation
    the newest datafile does not run, which covers what an older drop had left to do. What
    an older drop had already reached is gone even when the newest datafile runs it again, as
    it would be had that drop finished (the memory store retires a drop's pairs at once, Redis
    deletes user by user). It may raise Unavailable while a shared store is down, and is then
    retried every `retry_interval` seconds; after any other error (logged with its traceback
    the first time) the wait doubles each time, up to `max_retry_interval`, since a drop that
    fails the same way again would rescan the whole store every second."""

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
        self._dropping: _Drop | None = None
        self.retry_interval = 1.0
        self.max_retry_interval = 60.0
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
        """Swaps in `data` if it is a valid datafile that differs from the live one; returns
        once it is served, its drop of stale activations started but not awaited."""
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
        # Stopped before the swap, not after: an experiment the older datafile stopped and
        # this one runs again would otherwise lose activations written under this one.
        await self._cancel_drop(superseded_by=config.revision)
        first = not self._live.loaded
        previous = None if first else self._live.config.revision
        self._digest, self._rejected = digest, None
        self._live.swap(config)
        if first and self._on_first_load is not None:
            # Serving before the drop: with millions of users in Redis, a paced drop SCANs
            # the whole keyspace for minutes, and deciding never needs it done (a stopped
            # experiment's activations are never read; a vanished variation's are ignored).
            await self._on_first_load()
        self.reloads += 1
        log.info(
            "datafile_loaded", source=origin, revision=config.revision, previous_revision=previous
        )
        task = asyncio.create_task(self._drop_stale(config), name="trackd-drop-stale")
        self._dropping = _Drop(config.revision, task)
        return True

    async def _drop_stale(self, config: ProjectConfig) -> None:
        """Drops what `config` no longer runs; with the shared store down, or after any other
        error, tries again every `retry_interval` until it succeeds or is cancelled (a newer
        datafile, or shutdown). Decisions never read a stopped experiment's activations, so
        serving goes on meanwhile."""
        late = False
        failures = 0  # in a row, other than outages
        while True:
            wait = self.retry_interval
            try:
                dropped = await self._drop(config)
            except Unavailable as error:
                failures = 0
                if not late:
                    log.warning(
                        "activations_drop_deferred", revision=config.revision, error=str(error)
                    )
            except Exception as error:
                # Not an outage (a bug, or a Redis reply trackd.redis_down does not name):
                # caught so the retrying goes on, where a task that died of it would leave the
                # drop undone, its error seen only when the task was collected, if ever.
                failures += 1
                wait = min(self.retry_interval * 2 ** (failures - 1), self.max_retry_interval)
                if failures == 1:
                    log.exception(
                        "activations_drop_failed", revision=config.revision, retry_in=wait
                    )
                else:
                    log.error(
                        "activations_drop_failed",
                        revision=config.revision,
                        error=repr(error),
                        failures=failures,
                        retry_in=wait,
                    )
            else:
                event = "activations_dropped_late" if late else "activations_dropped"
                log.info(event, revision=config.revision, dropped=dropped)
                return
            late = True
            await asyncio.sleep(wait)

    async def _cancel_drop(self, superseded_by: str | None) -> None:
        """Cancels the drop under way, if any, and returns once it has ended. A store's
        `retain` cancelled part way stays consistent: Redis and LMDB commit whole steps (a
        script, a transaction) and forget the dropped pairs only in the last one, so the next
        drop asks about them again; the memory store retires them at once, and its next
        `retain` finishes the compaction cut short. (A Redis script already sent still runs:
        it deletes, in one SCAN chunk of users, only pairs the older datafile stopped.)"""
        drop = self._dropping
        if drop is None:
            return
        if not drop.task.done():
            log.info(
                "activations_drop_cancelled", revision=drop.revision, superseded_by=superseded_by
            )
        await cancel_and_wait(drop.task)
        self._dropping = None

    async def close(self) -> None:
        """Stops a drop under way (at shutdown, once no source offers any more) and waits for
        it: what it left is dropped after the next datafile change."""
        await self._cancel_drop(superseded_by=None)


__all__ = ["DropStale", "Reloader"]
