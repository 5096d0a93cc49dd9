"""Replay inside one process: a queue's recent history, and the tails that follow it.

Every message sent to a queue (not retries, not messages given back) is kept in a bounded
history and shown to every open ``tail()``; a broker's tails end when it closes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

HISTORY = 10_000
"""Messages a queue keeps for replay (the newest ones)."""


class History:
    """The newest messages sent to one queue, and the followers to show new ones to."""

    __slots__ = ("followers", "recent")

    def __init__(self, size: int = HISTORY) -> None:
        self.recent: deque[bytes] = deque(maxlen=size)
        self.followers: set[asyncio.Queue[bytes | None]] = set()

    def record(self, data: bytes) -> None:
        """Keep a newly sent message for replay and show it to every follower."""
        self.recent.append(data)
        for follower in self.followers:
            follower.put_nowait(data)


class Tails:
    """The tails one broker opened, so that closing it ends them."""

    def __init__(self) -> None:
        self.open: set[asyncio.Queue[bytes | None]] = set()

    async def follow(
        self, history: History, last: int, wanted: Callable[[bytes], bool] | None = None
    ) -> AsyncIterator[bytes]:
        """The last ``last`` messages of ``history`` (of those ``wanted``, if given), then
        every new one until closed."""
        follower: asyncio.Queue[bytes | None] = asyncio.Queue()
        recent: list[bytes] = []
        if last:
            for data in reversed(history.recent):
                if wanted is None or wanted(data):
                    recent.append(data)
                    if len(recent) == last:
                        break
            recent.reverse()
        history.followers.add(follower)
        self.open.add(follower)
        try:
            for old in recent:
                yield old
            while (new := await follower.get()) is not None:
                yield new
        finally:
            history.followers.discard(follower)
            self.open.discard(follower)

    def close(self) -> None:
        for follower in self.open:
            follower.put_nowait(None)  # ends the loop of follow()
