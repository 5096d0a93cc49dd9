"""cancel_and_wait: a task that lost its cancel (Python 3.11's wait_for, a library catching
CancelledError) is cancelled again until it ends; what tasks raised is retrieved."""

from __future__ import annotations

import asyncio
import gc

import pytest

from microhive.stopping import cancel_and_wait


async def test_a_task_that_swallowed_its_cancel_is_cancelled_again() -> None:
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                cancels += 1
                if cancels > 1:
                    raise  # the first one is lost, as in a 3.11 wait_for

    task = asyncio.get_running_loop().create_task(stubborn())
    await asyncio.sleep(0.02)
    await asyncio.wait_for(cancel_and_wait(task), 30)  # hang guard, not a time limit
    assert task.cancelled() and cancels == 2


async def test_finished_failed_and_missing_tasks(caplog: pytest.LogCaptureFixture) -> None:
    async def failing() -> None:
        raise ValueError("gone")

    failed = asyncio.get_running_loop().create_task(failing())
    await asyncio.sleep(0)
    await cancel_and_wait(None, failed)
    del failed
    gc.collect()
    assert "never retrieved" not in caplog.text
