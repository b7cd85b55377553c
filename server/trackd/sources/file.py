"""A datafile on disk, watched by polling its identity.

`os.stat` follows symlinks, so every way of replacing the file changes what it reports: an
edit in place (mtime, size), an atomic rename (inode) and a Kubernetes ConfigMap update,
which points the `..data` symlink at a new directory (inode of the resolved file).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from trackd.errors import DatafileError
from trackd.sources.reloader import Reloader

Identity = tuple[int, int, int, int]


class FileSource:
    def __init__(self, path: Path, interval: float = 0.5) -> None:
        self.path = path
        self.interval = interval
        self.description = str(path)
        self._seen: Identity | None = None

    def _identity(self) -> Identity | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def initial(self) -> bytes:
        # Identity before content: a change in between is seen again at the first poll.
        self._seen = self._identity()
        try:
            return self.path.read_bytes()
        except OSError as error:
            raise DatafileError(f"cannot read {self.path}: {error.strerror}") from error

    async def run(self, reloader: Reloader) -> None:
        while True:
            await asyncio.sleep(self.interval)
            identity = self._identity()
            if identity == self._seen:
                continue
            self._seen = identity
            if identity is None:
                reloader.failed("unreadable", self.description, "the file is gone")
                continue
            try:
                data = await asyncio.to_thread(self.path.read_bytes)
            except OSError as error:
                reloader.failed("unreadable", self.description, str(error.strerror))
                continue
            await reloader.offer(data, self.description)
