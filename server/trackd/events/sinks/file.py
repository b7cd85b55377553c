"""The file sink: one Event API batch per line, fsynced before it counts as delivered.

Batches sent together are written together and share one fsync."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from trackd.events.sinks import Delivery, Outcome


class FileSink:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        # In the writing thread, not the event loop: a send cancelled at shutdown leaves its
        # thread writing, and the last delivery attempt's line must not interleave with it.
        self._lock = threading.Lock()

    def _append(self, line: bytes) -> None:
        with self._lock:  # lines never interleave
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
        (delivery,) = await self.send_all([body])
        return delivery

    async def send_all(self, bodies: Sequence[bytes]) -> list[Delivery]:
        try:
            await asyncio.to_thread(self._append, b"".join(body + b"\n" for body in bodies))
        except OSError as error:
            return [Delivery(Outcome.RETRY, detail=f"{self.path}: {error}")]
        return [Delivery(Outcome.DELIVERED)] * len(bodies)

    async def aclose(self) -> None:
        return None


__all__ = ["FileSink"]
