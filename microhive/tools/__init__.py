"""The seed's ``microagent`` spellings of buses and brokers, for code copied from the talk.

Code written for ``microagent`` builds its transports by class, ``AIORedisSignalBus(dsn,
prefix='MYAPP')``; in microhive a URL chooses the transport (``SignalBus.from_url``). These
modules keep the old names so that such code runs with only its imports changed
(``from microhive.tools.aioredis import AIORedisSignalBus``); each returns the microhive bus or
broker for that engine. New code should call ``SignalBus.from_url`` / ``QueueBroker.from_url``
(docs/migration.md says what else changed and why).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..broker import QueueBroker
from ..bus import SignalBus


def with_options(dsn: str, **options: Any) -> str:
    """``dsn`` with URL query options added (those already in it win)."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    for key, value in options.items():
        if value is not None:
            query.setdefault(key, str(value))
    return urlunsplit(parts._replace(query=urlencode(query)))


def signal_bus(dsn: str, prefix: str | None, separator: str, **options: Any) -> SignalBus:
    """A bus for ``dsn``: microagent's ``prefix`` becomes the URL option ``prefix``."""
    given = None if prefix is None else f"{prefix}{separator}"
    return SignalBus.from_url(with_options(dsn, prefix=given), **options)


def queue_broker(dsn: str, **options: Any) -> QueueBroker:
    return QueueBroker.from_url(dsn, **options)
