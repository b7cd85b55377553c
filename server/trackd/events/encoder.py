"""The event encoder: a child process that forms and JSON-encodes delivery rounds.

Building and encoding Event API batches costs about as much CPU per event as acknowledging
it; in a child process it runs on the other core instead of competing with the gRPC event
loop for the GIL.

One child on one pipe, not a ProcessPoolExecutor: the pool's queues hold five named
semaphores, which a SIGKILLed daemon cannot unlink, so multiprocessing's resource tracker
(another child) outlived the daemon to unlink them and warned of "leaked semaphore objects",
and the pool's worker lived on until its lifeline noticed. A pipe needs no semaphore, and the
child waits on it: the daemon gone, however it ended, the child reads EOF and exits at once
(its lifeline covers the time it spends encoding).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

from trackd import lifeline
from trackd.events import rounds
from trackd.events.rounds import Formed

# The encoder's niceness: building JSON for delivery is background work, and where cores are
# few it must not take CPU from acknowledging events (it catches up when they are spare).
ENCODER_NICENESS = 10


class EncoderGone(Exception):
    """The encoder process ended (or was closed) before it answered."""


def _serve(requests: Connection, parent: int) -> None:
    """The child: answers `form_round` calls until the daemon closes its end of the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the daemon's; it closes the pipe
    lifeline.exit_with_parent(parent)
    os.nice(ENCODER_NICENESS)
    while True:
        try:
            args = requests.recv()
        except EOFError:
            return
        reply: tuple[bool, Any]
        try:
            reply = (True, rounds.form_round(*args))
        except Exception as error:  # the daemon's call raises it, as if it ran there
            reply = (False, error)
        try:
            requests.send(reply)
        except OSError:
            return


class EncoderProcess:
    """`await form_round(...)` in the child, started on first use, one call at a time."""

    def __init__(self) -> None:
        self._connection: Connection | None = None
        # Held for a whole call: a call cancelled at shutdown goes on in its thread, and the
        # shutdown flush's call must not interleave with it on the pipe.
        self._lock = threading.Lock()
        self._closing = False

    def _start(self) -> Connection:
        # spawn, never fork: a forked copy of a process running gRPC threads is unsafe.
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_serve, args=(theirs, os.getpid()), name="trackd-encoder", daemon=True
        )
        process.start()
        theirs.close()  # only the child holds that end: its EOF is ours closing
        self._connection = ours
        return ours

    async def form_round(self, *args: Any) -> list[Formed]:
        if self._closing:
            raise EncoderGone("the encoder is closed")
        # Started here, in the event loop's thread, which lives as long as the daemon: the
        # child's parent-death signal follows the thread that started it.
        connection = self._connection or self._start()
        return await asyncio.to_thread(self._call, connection, args)

    def _call(self, connection: Connection, args: tuple[Any, ...]) -> list[Formed]:
        with self._lock:
            try:
                if self._closing:
                    raise EncoderGone("the encoder is closed")
                connection.send(args)
                ok, result = connection.recv()
            except (EOFError, OSError) as error:
                raise EncoderGone(f"the encoder process ended: {error!r}") from error
            finally:
                if self._closing:
                    self._shut()
        if not ok:
            raise result
        formed: list[Formed] = result
        return formed

    def close(self) -> None:
        """Ends the child (it reads EOF). Does not wait for a call in progress: that call
        closes the pipe when it returns."""
        self._closing = True
        if self._lock.acquire(blocking=False):
            try:
                self._shut()
            finally:
                self._lock.release()

    def _shut(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


__all__ = ["ENCODER_NICENESS", "EncoderGone", "EncoderProcess"]
