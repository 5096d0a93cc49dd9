"""One AMQP delivery: acked in batches by its consumer, retried by a delayed publish, buried
by a publish to the dead-letter queue, released by a nack that requeues it."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ...broker import Delivery
from ...envelope import Envelope

if TYPE_CHECKING:
    from .consumer import AmqpConsumer

log = logging.getLogger("microhive.amqp")


class AmqpDelivery(Delivery):
    __slots__ = ("consumer", "epoch", "tag")

    def __init__(
        self,
        consumer: AmqpConsumer,
        tag: int,
        epoch: int,
        raw: bytes,
        envelope: Envelope | None,
        error: str | None,
    ) -> None:
        super().__init__(raw, envelope, error)
        self.consumer = consumer
        self.tag = tag
        self.epoch = epoch

    def withdraw(self) -> bool:
        """Mark it settled by its consumer, which never handed it out (at ``close()``)."""
        return self._settle()

    async def ack(self) -> None:
        if self._settle():
            self.consumer.acked(self)

    async def retry(self, delay: float, reason: str) -> None:
        if not self._settle():
            return
        assert self.envelope is not None, "an undecodable message cannot be retried"
        consumer = self.consumer
        if not consumer.holds(self):
            return  # its channel is gone: RabbitMQ delivers the message again
        following = self.envelope.next_attempt(**{"x-last-error": reason})
        try:
            await consumer.outlet.retry_later(consumer.queue, following, delay)
        except asyncio.CancelledError:
            consumer.give_back(self)
            raise
        except Exception as exc:
            log.error(
                "could not schedule the retry of %s on %r (%s); returning it to the queue",
                self.envelope.id,
                consumer.queue,
                exc,
            )
            await consumer.requeue(self)
            return
        consumer.acked(self)

    async def dead_letter(self, reason: str) -> None:
        if not self._settle():
            return
        consumer = self.consumer
        if not consumer.holds(self):
            return
        try:
            await consumer.outlet.bury(consumer.queue, self.raw, self.envelope, reason)
        except asyncio.CancelledError:
            consumer.give_back(self)
            raise
        except Exception as exc:
            log.error(
                "could not dead-letter a message of %r (%s); returning it to the queue",
                consumer.queue,
                exc,
            )
            await consumer.requeue(self)
            return
        consumer.acked(self)

    async def release(self) -> None:
        if self._settle():
            await self.consumer.requeue(self)
