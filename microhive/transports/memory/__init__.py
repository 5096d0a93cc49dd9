"""The in-process transport: ``memory://`` or ``memory://name`` for an independent hive."""

from .broker import MemoryBroker
from .bus import MemoryBus
from .hive import Hive

__all__ = ["Hive", "MemoryBroker", "MemoryBus"]
