"""``microagent.tools.pulsar``: ``RedisSignalBus`` — the same Redis signal bus in microhive."""

from __future__ import annotations

from typing import Any

from ..bus import SignalBus
from . import signal_bus


def RedisSignalBus(dsn: str, prefix: str | None = None, **options: Any) -> SignalBus:
    """The Redis signal bus (microagent had a second Redis client for it; one is enough)."""
    return signal_bus(dsn, prefix, ":", **options)
