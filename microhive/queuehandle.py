"""``broker.<queue>``: one queue of a broker, to send to, submit tasks to and inspect."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .deadletters import DeadLetterHandle
from .declarations import Queue
from .envelope import Envelope
from .stats import QueueStats

if TYPE_CHECKING:
    from .broker import QueueBroker
    from .deliveries import DeadLetter
    from .tasks.canvas import Signature
    from .tasks.job import Job
    from .tasks.submit import Callbacks


class QueueHandle:
    """``broker.<queue>``: send to one queue or ask its length."""

    __slots__ = ("broker", "queue", "sender")

    def __init__(self, broker: QueueBroker, queue: Queue, sender: str = "") -> None:
        self.broker = broker
        self.queue = queue
        self.sender = sender

    async def send(
        self,
        payload: Any,
        *,
        key: str | None = None,
        delay: float | None = None,
        headers: Mapping[str, str] | None = None,
        sender: str | None = None,
    ) -> str:
        """Enqueue ``payload``; ``sender`` defaults to the agent whose ``self.broker`` this is."""
        return await self.broker.send(
            self.queue,
            payload,
            key=key,
            delay=delay,
            headers=headers,
            sender=self.sender if sender is None else sender,
        )

    async def length(self) -> int:
        return await self.broker.length(self.queue)

    def s(self, **arguments: Any) -> Signature[Any]:
        """A signature of this queue's task: ``broker.add.s(x=1)``."""
        return self.queue.s(**arguments)

    async def submit(
        self,
        *,
        delay: float | None = None,
        at: datetime | float | None = None,
        job_id: str | None = None,
        link: Callbacks = None,
        link_error: Callbacks = None,
        **arguments: Any,
    ) -> Job[Any]:
        """Submit this queue's task with keyword ``arguments``: ``broker.add.submit(x=1, y=1)``."""
        return await self.broker.submit(
            self.queue.s(**arguments),
            delay=delay,
            at=at,
            job_id=job_id,
            link=link,
            link_error=link_error,
            sender=self.sender,
        )

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return await self.broker.dead_letters(self.queue, limit)

    async def stats(self) -> QueueStats:
        """Length, consumers, in flight and dead letters: see QueueBroker.stats."""
        return await self.broker.stats(self.queue)

    @property
    def dead(self) -> DeadLetterHandle:
        """This queue's dead letters: ``list()``, ``requeue(...)``, ``purge(...)``."""
        return DeadLetterHandle(self.broker, self.queue)

    def tail(self, *, last: int = 0, key: str | None = None) -> AsyncIterator[Envelope]:
        """``async for message in self.broker.telemetry.tail(last=180, key="terra")``: see
        QueueBroker.tail."""
        return self.broker.tail(self.queue, last=last, key=key)

    def __repr__(self) -> str:
        return f"<QueueHandle {self.queue.name!r} on {self.broker!r}>"
