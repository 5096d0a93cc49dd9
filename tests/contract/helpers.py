"""Small waiting helpers for contract tests: poll with a deadline, never sleep blindly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from microhive.testing import eventually as eventually_


async def eventually(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    return await eventually_(condition, timeout, 0.01)
