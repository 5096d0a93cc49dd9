"""What a transport hands the agent runtime: deliveries to settle, consumers that yield them,
and the dead letters it parks.

The runtime decides *when* to ack, retry or dead-letter (its policy); a transport's
:class:`Delivery` decides *how* on its engine (its mechanism).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass

from .envelope import Envelope
from .errors import ConsumerClosed


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message parked in a queue's dead-letter store, with why and when."""

    queue: str
    reason: str
    raw: bytes
    envelope: Envelope | None
    attempt: int
    dead_at: float


class Delivery(ABC):
    """One received message, to be settled exactly once: ack, retry, dead-letter or release.

    ``envelope`` is None when the bytes could not be decoded; ``error`` then says why.
    """

    __slots__ = ("envelope", "error", "raw", "settled")

    def __init__(self, raw: bytes, envelope: Envelope | None, error: str | None = None) -> None:
        self.raw = raw
        self.envelope = envelope
        self.error = error
        self.settled = False

    def _settle(self) -> bool:
        if self.settled:
            return False
        self.settled = True
        return True

    @abstractmethod
    async def ack(self) -> None:
        """The handler succeeded: remove the message for good."""

    def ack_now(self) -> bool:
        """Acknowledge without waiting, where the transport settles acks in the background
        anyway (a batch acks hundreds at once); False: use :meth:`ack`."""
        return False

    @abstractmethod
    async def retry(self, delay: float, reason: str) -> None:
        """Deliver the message again (``attempt + 1``) after ``delay`` seconds."""

    @abstractmethod
    async def dead_letter(self, reason: str) -> None:
        """Park the message in the dead-letter store with ``reason``."""

    @abstractmethod
    async def release(self) -> None:
        """Return the message unprocessed, first in line (shutdown, cancelled handler)."""


class Consumer(ABC):
    """A stream of deliveries from one queue for one consuming agent instance."""

    @abstractmethod
    async def get(self) -> Delivery:
        """The next delivery; raises :class:`ConsumerClosed` once closed."""

    @abstractmethod
    async def close(self) -> None:
        """Stop intake and return prefetched, unstarted deliveries to the queue.

        Deliveries already handed out stay valid: they can still be settled.
        """

    def ready(self, limit: int) -> list[Delivery]:
        """Up to ``limit`` deliveries already received, without waiting (none by default).

        A transport that reads ahead overrides it, so a batch fills from its buffer at once.
        """
        return []

    async def get_batch(self, limit: int, wait: float) -> list[Delivery]:
        """Up to ``limit`` deliveries: waits for the first as ``get()`` does, then up to
        ``wait`` seconds for the rest (less when the batch fills). Raises ConsumerClosed only
        when nothing was taken."""
        batch = [await self.get()]
        batch += self.ready(limit - 1)
        if len(batch) >= limit or wait <= 0:
            return batch
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while len(batch) < limit and loop.time() < deadline:
            try:
                async with asyncio.timeout_at(deadline):
                    batch.append(await self.get())  # get() is cancel-safe on every transport
            except (TimeoutError, ConsumerClosed):
                break
            batch += self.ready(limit - len(batch))
        return batch
