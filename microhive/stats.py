"""What one queue looks like right now: :class:`QueueStats`, from :meth:`QueueBroker.stats`.

One typed answer for ``microhive queues``, the web console and the sampled metrics, so
that none of them asks an engine in its own way. A figure an engine cannot tell is ``None``
(shown as "—"), never a guess passed off as a count; docs/operations.md says, per engine,
which figures are exact and why the others are missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A queue's figures at one moment."""

    queue: str
    length: int
    """Messages not yet acknowledged: waiting, delayed and in flight (as ``length()``)."""
    consumers: int | None
    """Consumers reading the queue now, from every process (None: the engine cannot tell)."""
    in_flight: int | None
    """Messages handed to a consumer and not yet settled (None: the engine cannot tell)."""
    dead_letters: int | None
    """Messages parked in the queue's dead-letter store (None: the engine cannot tell)."""

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON data (``None`` stays ``null``)."""
        return asdict(self)
