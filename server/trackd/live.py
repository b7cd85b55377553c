"""The live datafile: an immutable snapshot swapped atomically, so readers never lock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from trackd.datafile.model import ProjectConfig


@dataclass(frozen=True, slots=True)
class Snapshot:
    config: ProjectConfig
    loaded_at: float  # wall-clock seconds, for GetConfig


class LiveConfig:
    """Holds the current snapshot; `swap` replaces it and wakes every watcher."""

    def __init__(self, config: ProjectConfig, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._snapshot = Snapshot(config, clock())
        self._changed = asyncio.Event()

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def config(self) -> ProjectConfig:
        return self._snapshot.config

    def swap(self, config: ProjectConfig) -> Snapshot:
        self._snapshot = Snapshot(config, self._clock())
        # Wake current watchers, then arm a fresh event for the next change.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return self._snapshot

    async def watch(self) -> AsyncIterator[Snapshot]:
        """Yields the current snapshot, then each new one; a slow watcher sees the latest."""
        while True:
            changed = self._changed
            yield self._snapshot
            await changed.wait()
