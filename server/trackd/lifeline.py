"""Child processes that end with their parent, however the parent ends.

A SIGKILLed daemon (the OOM killer, `kill -9`, a crashed supervisor) cannot stop its
children, and a spawned child blocked on its work queue never notices: without this, each
such death would leave a process behind, and restarts would pile them up.

On Linux the kernel sends the child SIGTERM the moment its parent dies (PR_SET_PDEATHSIG);
elsewhere a thread polls for the parent once a second. The signal is SIGTERM, not SIGKILL:
a worker drains as on any SIGTERM.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

POLL_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _watch(parent: int) -> None:
    while os.getppid() == parent:  # re-parented (to init or a subreaper) once it dies
        time.sleep(POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


def _parent_death_signal(signum: int) -> bool:
    """Asks the kernel for `signum` when the parent dies; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return False


def exit_with_parent(parent: int) -> None:
    """Called first thing in a child process: SIGTERMs it when `parent` is gone.

    `parent` is the pid the parent passed itself (`os.getpid()` there): asking `os.getppid()`
    here would be too late when the parent died while this child was starting. The kernel's
    signal follows the parent *thread* that started the child: start it from a thread that
    lives as long as the parent (the main thread, the event loop's).
    """
    if _parent_death_signal(signal.SIGTERM):
        if os.getppid() != parent:  # died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)
        return
    threading.Thread(target=_watch, args=(parent,), name="trackd-lifeline", daemon=True).start()


__all__ = ["exit_with_parent"]
