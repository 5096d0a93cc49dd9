"""One NATS JetStream delivery: settled through the consumer's settler (acks, naks, retries,
dead letters), never through the broker itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...broker import Delivery
from ...envelope import Envelope
from .wire import NAK

if TYPE_CHECKING:
    from .consumer import NatsConsumer


class NatsDelivery(Delivery):
    __slots__ = ("consumer", "delivered", "headers", "reply", "sequence", "touched")

    def __init__(
        self,
        consumer: NatsConsumer,
        reply: str,
        sequence: int,
        delivered: int,
        raw: bytes,
        envelope: Envelope | None,
        error: str | None,
        touched: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(raw, envelope, error)
        self.headers = headers  # as stored: a dead letter keeps them
        self.consumer = consumer
        self.reply = reply
        self.sequence = sequence
        self.delivered = delivered
        self.touched = touched

    @property
    def message_id(self) -> str:
        """The stream sequence number of the message."""
        return str(self.sequence)

    async def ack(self) -> None:
        """``+ACK``; like an AMQP ack it does not wait for the server. An ack that is lost
        (the connection dropped) means a delivery again after ``ack_wait``."""
        if self._settle():
            consumer = self.consumer
            consumer.settled(self)
            consumer.settler.ack(self.reply, self)

    def ack_now(self) -> bool:
        if self._settle():
            consumer = self.consumer
            consumer.settled(self)
            consumer.settler.ack(self.reply, self)
        return True

    async def retry(self, delay: float, reason: str) -> None:
        """A new message (``attempt`` + 1) on the retry subject, then this one is acked."""
        if self._settle():
            self.consumer.settled(self)
            consumer = self.consumer
            place = consumer.place
            await consumer.settler.retry(
                self, place.queue, delay, reason, place, consumer.declaration
            )

    async def dead_letter(self, reason: str) -> None:
        """Stored in the dead-letter stream, then acked."""
        if self._settle():
            self.consumer.settled(self)
            await self.consumer.settler.bury(self, self.consumer.queue, reason)

    async def release(self) -> None:
        """``-NAK``: the server delivers it again at once, before newer messages."""
        if self._settle():
            self.consumer.settled(self)
            await self.consumer.settler.tell(self.reply, NAK, "release", self)
