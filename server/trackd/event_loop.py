"""The event loop the daemon runs on (`--event-loop`).

uvloop answers the same gRPC calls with less CPU than asyncio's own loop: grpc.aio wakes the
loop from its completion-queue thread for every call, and those wake-ups and the callbacks
they schedule are cheaper on libuv. Measured side by side in bench/results (2026-12-07):
about 13-16% less CPU per unary call for trackd, 10% for a bare grpc.aio server.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from trackd.config import EventLoop

T = TypeVar("T")


def loop_factory(choice: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the chosen loop; None for asyncio's own. Settings has already refused
    "uvloop" when it is not installed; "auto" falls back to asyncio when uvloop is missing or
    does not import (a wheel built for another Python, say)."""
    if choice == "asyncio" or (choice == "auto" and importlib.util.find_spec("uvloop") is None):
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: EventLoop) -> T:
    """asyncio.run on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)


def running_loop_name() -> str:
    """The running loop's kind, for the `started` log line: "uvloop" or "asyncio"."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"
