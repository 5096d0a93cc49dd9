"""``microagent.tools.aioredis``: ``AIORedisSignalBus`` and ``AIORedisBroker`` on Redis."""

from __future__ import annotations

from typing import Any

from ..broker import QueueBroker
from ..bus import SignalBus
from . import queue_broker, signal_bus


def AIORedisSignalBus(dsn: str, prefix: str | None = None, **options: Any) -> SignalBus:
    """The Redis signal bus; ``prefix`` goes before every channel name (``MYAPP:``)."""
    return signal_bus(dsn, prefix, ":", **options)


def AIORedisBroker(dsn: str, **options: Any) -> QueueBroker:
    """The Redis queue broker (Streams with consumer groups, not microagent's lists)."""
    return queue_broker(dsn, **options)
