"""cancel_and_wait: a background task stops even when something it awaits loses a cancel."""

from __future__ import annotations

import asyncio

import pytest

from trackd.background import cancel_and_wait


async def loses_one_cancel(rounds: list[int]) -> None:
    # What redis-py did to the fleet publisher: the CancelledError is caught inside a call,
    # the call returns normally, and the loop around it goes on.
    swallowed = False
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed = True
        rounds.append(1)


async def test_a_task_that_loses_the_first_cancel_is_still_stopped() -> None:
    rounds: list[int] = []
    task = asyncio.create_task(loses_one_cancel(rounds))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done() and rounds == [1]  # one cancel was not enough
    async with asyncio.timeout(10):
        await cancel_and_wait(task)
    assert task.cancelled()


async def test_the_exception_a_task_ended_with_is_raised() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="boom"):
        await cancel_and_wait(task)


async def test_a_task_that_finished_is_left_alone() -> None:
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    await cancel_and_wait(task)
    assert not task.cancelled()
