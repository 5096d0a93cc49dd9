"""A hive is one in-process world: who listens to which signal, and the queues.

Buses and brokers made from the same ``memory://name`` URL on the same event loop meet in
the same hive. The lookup table is keyed weakly by the event loop, so a hive lives exactly
as long as its loop: each test (one loop each) starts with empty hives. This is the one
place microhive keeps module-level state, and only because an in-process rendezvous needs it.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .queues import MemoryQueue

if TYPE_CHECKING:
    from .bus import Mailbox
    from .routing import MemoryExchange

_HIVES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Hive]] = (
    weakref.WeakKeyDictionary()
)


def hive_name(url: str) -> str:
    parts = urlsplit(url)
    return (parts.netloc + parts.path).strip("/")


def hive_for(url: str) -> Hive:
    """The hive that ``url`` names on the running event loop."""
    hives = _HIVES.setdefault(asyncio.get_running_loop(), {})
    name = hive_name(url)
    hive = hives.get(name)
    if hive is None:
        hive = hives[name] = Hive(name)
    return hive


class Hive:
    """Signal listeners, reply inboxes, queues and exchanges of one in-process world."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.listeners: dict[str, set[Mailbox]] = {}
        self.inboxes: dict[str, Mailbox] = {}
        self.queues: dict[str, MemoryQueue] = {}
        self.exchanges: dict[str, MemoryExchange] = {}

    def queue(self, name: str) -> MemoryQueue:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = MemoryQueue(name)
        return queue

    def __repr__(self) -> str:
        return f"<Hive {self.name!r}>"
