"""The file sink: one Event API batch per line, fsynced before it counts as delivered.

Batches sent together are written together and share one fsync.

A daemon killed in the middle of a write leaves a torn last line (no newline). Appending
onto it would make one invalid line of the torn batch and the next one, and the next one
is usually that same batch, redelivered because it was never acknowledged: a consumer
reading line by line would lose it. So before its first write the sink moves a torn tail
aside, byte for byte, into a sibling `<name>.torn-<UTC time>` file and cuts the file back
to its last newline. Nothing acknowledged is in the torn bytes (a batch is acknowledged
only after its fsync), and the outbox sends them again.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from trackd.events.sinks import Delivery, Outcome

log = structlog.get_logger("trackd.events")

_TAIL_CHUNK = 64 * 1024  # read backwards in these steps looking for the last newline


def last_line_end(fd: int) -> int:
    """Length of the file up to and including its last newline (0 if it has none)."""
    end = os.fstat(fd).st_size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _copy_range(source: int, start: int, stop: int, target: int) -> None:
    offset = start
    while offset < stop:
        chunk = os.pread(source, min(_TAIL_CHUNK, stop - offset), offset)
        if not chunk:
            raise OSError(f"file shrank while copying its torn tail (at byte {offset})")
        view = memoryview(chunk)
        while view:
            view = view[os.write(target, view) :]
        offset += len(chunk)


def move_torn_tail_aside(fd: int, path: Path) -> Path | None:
    """If the file open at `fd` (at `path`) does not end in a newline, copies the bytes after
    its last newline to a new sibling file, fsyncs it, then truncates them away; returns the
    sibling's path (None when the file was whole)."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return None
    keep = last_line_end(fd)
    # Copied under a scratch name and linked into place whole: a kill during the copy
    # leaves no side file that looks complete but is not (the next start copies again).
    scratch = path.with_name(path.name + ".torn.partial")
    target = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _copy_range(fd, keep, size, target)
        os.fsync(target)
    finally:
        os.close(target)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for attempt in range(1000):
        aside = path.with_name(f"{path.name}.torn-{stamp}Z" + (f"-{attempt}" if attempt else ""))
        try:
            os.link(scratch, aside)  # unlike a rename, never replaces an earlier side file
        except FileExistsError:
            continue
        break
    else:
        raise OSError(f"{path}: no free name for its torn tail")
    os.unlink(scratch)
    _fsync_directory(path.parent)  # the side file exists for sure before the bytes go
    os.ftruncate(fd, keep)
    os.fsync(fd)
    log.warning(
        "event_file_torn_line_moved",
        path=str(path),
        moved_to=str(aside),
        bytes=size - keep,
        kept_bytes=keep,
    )
    return aside


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileSink:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        # In the writing thread, not the event loop: a send cancelled at shutdown leaves its
        # thread writing, and the last delivery attempt's line must not interleave with it.
        self._lock = threading.Lock()
        self._tail_checked = False  # a torn tail left by an earlier process was looked for

    def _append(self, line: bytes) -> None:
        with self._lock:  # lines never interleave
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                # Other processes appending to the same file (workers given one file://
                # endpoint) must not see this one's line half-written and move it aside.
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not self._tail_checked:
                    move_torn_tail_aside(fd, self.path)
                    self._tail_checked = True
                start = os.fstat(fd).st_size
                try:
                    view = memoryview(line)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                except OSError:
                    # A failed write (a full disk) may leave part of the line; it is sent
                    # again, so cut it off now, or failing that at the next write.
                    try:
                        os.ftruncate(fd, start)
                    except OSError:
                        self._tail_checked = False
                    raise
            finally:
                os.close(fd)  # also releases the flock

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


__all__ = ["FileSink", "last_line_end", "move_torn_tail_aside"]
