"""The file sink: one Event API batch per line, fsynced before it counts as delivered."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from trackd.events.sinks import Delivery, Outcome


class FileSink:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = asyncio.Lock()

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)

    async def send(self, body: bytes) -> Delivery:
        async with self._lock:  # lines never interleave
            try:
                await asyncio.to_thread(self._append, body + b"\n")
            except OSError as error:
                return Delivery(Outcome.RETRY, detail=f"{self.path}: {error}")
        return Delivery(Outcome.DELIVERED)

    async def aclose(self) -> None:
        return None


__all__ = ["FileSink"]
