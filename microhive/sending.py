"""The checks a message's arguments pass before it is encoded: the same on every engine, so
bad input fails the same way whichever transport a program runs on."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .declarations import Exchange, Queue
from .errors import PayloadError, UnknownNameError

MAX_DELAY = 49 * 24 * 3600.0
"""The longest ``delay=`` every engine accepts (seconds; 49 days). RabbitMQ holds delayed
messages with a per-message TTL that stops near 49.7 days (2**32 - 1 ms); one limit for all
engines keeps a program portable. Longer waits belong in a schedule."""


def check_delay(queue: str, delay: Any) -> None:
    """Reject a ``delay=`` that is not a number in ``[0, MAX_DELAY]``."""
    if not isinstance(delay, int | float) or not math.isfinite(delay) or delay < 0:
        raise PayloadError(f"queue {queue!r}: delay must be a number >= 0")
    if delay > MAX_DELAY:
        raise PayloadError(
            f"queue {queue!r}: delay of {delay:g} s is over the maximum of "
            f"{MAX_DELAY:g} s (49 days); use a schedule for longer waits"
        )


def check_sender(target: str, sender: Any) -> None:
    """Reject a ``sender=`` that is not a plain string (``target``: "queue 'x'"...)."""
    if type(sender) is not str:
        raise PayloadError(f"{target}: sender must be a string, got {type(sender).__name__}")


def checked_headers(name: str, headers: Mapping[str, str] | None) -> dict[str, str]:
    """A copy of ``headers`` the caller may add to, once they map strings to strings."""
    if not headers:
        return {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise PayloadError(f"queue {name!r}: headers must map strings to strings")
    return dict(headers)


def find_exchange(exchange: Exchange | str, queues: Iterable[Queue]) -> Exchange:
    """The exchange ``publish()`` goes to: given, or named and bound to one of ``queues``
    (an exchange exists for microhive only through the queues bound to it)."""
    if isinstance(exchange, Exchange):
        return exchange
    found = {e.name: e for q in queues for e in q.exchanges}
    if exchange not in found:
        known = ", ".join(sorted(found)) or "none"
        raise UnknownNameError(
            f"unknown exchange {exchange!r}: no queue of the catalog is bound to it "
            f"(known: {known}); pass the Exchange itself"
        )
    return found[exchange]
