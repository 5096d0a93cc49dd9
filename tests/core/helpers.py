"""Waiting helpers for core tests: poll a condition with a deadline, never sleep blindly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from microhive.testing import eventually as eventually_


async def eventually(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    return await eventually_(condition, timeout, 0.005)


async def run_for(coroutine: Coroutine[Any, Any, Any], seconds: float) -> None:
    """Run ``coroutine`` (a schedule loop) for ``seconds`` of real time, then cancel it."""
    task = asyncio.get_running_loop().create_task(coroutine)
    await asyncio.sleep(seconds)
    assert not task.done(), f"the loop ended early: {task}"
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def adapter(name: str = "tests.core") -> logging.LoggerAdapter[logging.Logger]:
    return logging.LoggerAdapter(logging.getLogger(name), {})
