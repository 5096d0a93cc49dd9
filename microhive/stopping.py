"""Stopping background tasks for good, even when a cancel is lost on the way.

A cancel can be swallowed: Python 3.11's ``asyncio.wait_for`` returns the inner result
when the cancel arrives just as that result does (fixed in 3.12), and nats-py waits through
``wait_for`` on every request. A loop that lost its cancel runs on, and ``await task``
after ``task.cancel()`` then waits forever (a console on NATS did not stop: its sampling
loop lost the cancel inside a store read). :func:`cancel_and_wait` cancels again until
the task has ended.
"""

from __future__ import annotations

import asyncio
from typing import Any

AGAIN_AFTER = 0.5
"""Seconds a cancelled task has to end before it is cancelled again."""


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` (None and finished ones are passed over) and return once each has
    ended; what they raised is dropped, as ``gather(..., return_exceptions=True)`` does."""
    running = {task for task in tasks if task is not None and not task.done()}
    try:
        while running:
            for task in running:
                task.cancel()
            _, running = await asyncio.wait(running, timeout=AGAIN_AFTER)
    finally:
        for each in tasks:
            if each is not None and each.done() and not each.cancelled():
                each.exception()  # retrieved: no "exception was never retrieved" later
