"""Waiting helpers for core tests: poll a condition with a deadline, never sleep blindly."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable, Coroutine
from typing import Any


async def eventually(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``condition`` (sync or async) until it returns something truthy."""
    async with asyncio.timeout(timeout):
        while True:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(0.005)


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
