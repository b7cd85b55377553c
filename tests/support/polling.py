"""Waiting for a condition that some other task or process will make true."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def eventually(check: Callable[[], Awaitable[bool] | bool], within: float = 10.0) -> None:
    """Polls `check` (sync or async) until it is true; fails with TimeoutError after `within`."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            # Polling, not an Event: the state lives in another part or process.
            await asyncio.sleep(0.02)
