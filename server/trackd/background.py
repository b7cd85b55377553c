"""Stopping a background task for certain.

One `task.cancel()` is a request the task can lose: code it awaits may catch the
CancelledError and carry on. Seen here with redis-py during a Redis restart (Python 3.11):
the fleet-results publisher went on publishing after `close()` cancelled it, `close()`
waited for it forever, and so did shutdown. So a stop cancels again until the task is over.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

# Long enough for a cancelled task's own cleanup (a finally with an await) to finish before
# it is interrupted again; short enough that a lost cancellation costs no visible delay.
RECANCEL_AFTER_S: Final = 0.1


async def cancel_and_wait(
    task: asyncio.Task[Any], recancel_after: float = RECANCEL_AFTER_S
) -> None:
    """Cancels `task` and returns once it has ended; an exception it ended with is raised."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=recancel_after)
    if not task.cancelled():
        task.result()


__all__ = ["RECANCEL_AFTER_S", "cancel_and_wait"]
