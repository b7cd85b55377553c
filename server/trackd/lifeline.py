"""Child processes that end with their parent, however the parent ends.

A SIGKILLed daemon (the OOM killer, `kill -9`, a crashed supervisor) cannot stop its
children, and a spawned child blocked on its work queue never notices: without this, each
such death would leave a process behind, and restarts would pile them up.
"""

from __future__ import annotations

import os
import signal
import threading
import time

POLL_SECONDS = 1.0


def _watch(parent: int) -> None:
    while os.getppid() == parent:  # re-parented (to init or a subreaper) once it dies
        time.sleep(POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


def exit_with_parent(parent: int) -> None:
    """Called first thing in a child process: SIGTERMs it soon after `parent` is gone.

    `parent` is the pid the parent passed itself (`os.getpid()` there): asking `os.getppid()`
    here would be too late when the parent died while this child was starting.
    """
    threading.Thread(target=_watch, args=(parent,), name="trackd-lifeline", daemon=True).start()


__all__ = ["exit_with_parent"]
