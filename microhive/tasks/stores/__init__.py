"""One :class:`~microhive.tasks.store.ResultStore` per engine, and the one a broker uses.

``store_for(broker)`` is how every part of the task layer finds where results live: the
same store for a broker's whole life (closed with it). On ``memory://`` one store per hive,
shared by every broker of that hive as its queues are; on other engines the store the
broker's URL names (``engines.open_engine_store`` / ``results_url_of``).
"""

from __future__ import annotations

import importlib
import weakref
from typing import TYPE_CHECKING, Any

from ...errors import ConfigurationError
from ..store import ResultStore
from .memory import MemoryStore

if TYPE_CHECKING:
    from ...broker import QueueBroker
    from ...transports.memory import Hive

_HIVE_STORES: weakref.WeakKeyDictionary[Hive, MemoryStore] = weakref.WeakKeyDictionary()

ATTRIBUTE = "_result_store"


def store_for(broker: QueueBroker) -> ResultStore:
    """The result store of ``broker``'s jobs (made on first use, kept on the broker)."""
    store: ResultStore | None = getattr(broker, ATTRIBUTE, None)
    if store is None:
        store = _open(broker)
        setattr(broker, ATTRIBUTE, store)
    return store


def _open(broker: QueueBroker) -> ResultStore:
    from ...transports.memory import MemoryBroker
    from ...transports.memory.hive import hive_for

    if isinstance(broker, MemoryBroker):
        hive = broker._given_hive or hive_for(broker.url)
        found = _HIVE_STORES.get(hive)
        if found is None:
            found = _HIVE_STORES[hive] = MemoryStore()
        return found
    try:
        engines: Any = importlib.import_module(f"{__name__}.engines")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.engines":
            raise
        raise ConfigurationError(
            f"{broker!r}: results on this engine need microhive.tasks.stores.engines, "
            "which this installation does not have (only memory:// keeps results here)"
        ) from None
    opened: ResultStore = engines.open_engine_store(engines.results_url_of(broker))
    return opened


async def close_store(broker: QueueBroker) -> None:
    """Close the store ``broker`` opened (a memory hive's store stays with its hive)."""
    store = getattr(broker, ATTRIBUTE, None)
    if store is not None:
        setattr(broker, ATTRIBUTE, None)
        await store.close()
