"""The live datafile: an immutable snapshot swapped atomically, so readers never lock.

A daemon that fetches its datafile from a URL starts with none: until the first `swap`,
`loaded` is false and reading the snapshot raises NoDatafileYet (UNAVAILABLE), the same
error the interceptor answers with before a handler runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from trackd.datafile.model import ProjectConfig
from trackd.errors import NoDatafileYet


@dataclass(frozen=True, slots=True)
class Snapshot:
    config: ProjectConfig
    loaded_at: float  # wall-clock seconds, for GetConfig


class LiveConfig:
    """Holds the current snapshot; `swap` replaces it and wakes every watcher."""

    def __init__(
        self, config: ProjectConfig | None, clock: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        self._snapshot = Snapshot(config, clock()) if config is not None else None
        self._changed = asyncio.Event()

    @property
    def loaded(self) -> bool:
        return self._snapshot is not None

    @property
    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            raise NoDatafileYet
        return self._snapshot

    @property
    def config(self) -> ProjectConfig:
        return self.snapshot.config

    def swap(self, config: ProjectConfig) -> Snapshot:
        snapshot = self._snapshot = Snapshot(config, self._clock())
        # Wake current watchers, then arm a fresh event for the next change.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return snapshot

    async def watch(self) -> AsyncIterator[Snapshot]:
        """Yields the current snapshot, then each new one; a slow watcher sees the latest."""
        while True:
            changed = self._changed
            if self._snapshot is not None:
                yield self._snapshot
            await changed.wait()
