"""One Kafka delivery: a record whose offset is committed once it and every record before it
settled; a retry or a dead letter is a new record, published before the offset moves."""

from __future__ import annotations

from typing import Any, Protocol

from ...broker import Delivery
from ...codecs import Codec
from ...envelope import Envelope
from .offsets import Offsets


class Settling(Protocol):
    """What a delivery settles through (its consumer): where retries and dead letters go,
    and whom to tell that an offset is done or to be read again."""

    codec: Codec

    def settled(self, delivery: KafkaDelivery, done: bool) -> None: ...

    async def requeue(self, envelope: Envelope, key: bytes | None, delay: float) -> None: ...

    async def bury(self, delivery: KafkaDelivery, reason: str, attempt: int) -> None: ...


class KafkaDelivery(Delivery):
    __slots__ = ("consumer", "headers", "key", "offset", "offsets")

    def __init__(
        self,
        consumer: Settling,
        offsets: Offsets,
        offset: int,
        key: bytes | None,
        raw: bytes,
        envelope: Envelope | None,
        error: str | None,
        headers: Any,
    ) -> None:
        super().__init__(raw, envelope, error)
        self.consumer = consumer
        self.offsets = offsets
        self.offset = offset
        self.key = key
        self.headers = headers  # the record's: a dead letter keeps them

    @property
    def message_id(self) -> str:
        """``<topic>:<partition>:<offset>``."""
        tp = self.offsets.tp
        return f"{tp.topic}:{tp.partition}:{self.offset}"

    async def ack(self) -> None:
        if self._settle():
            self.consumer.settled(self, True)

    def ack_now(self) -> bool:
        if self._settle():
            self.consumer.settled(self, True)
        return True

    async def retry(self, delay: float, reason: str) -> None:
        """A new record (``attempt + 1``) for this group, then this offset is done. Delayed:
        to the queue's delay topic, moved back when due; at once: to the queue's topic."""
        if not self._settle():
            return
        assert self.envelope is not None, "an undecodable message cannot be retried"
        consumer = self.consumer
        envelope = self.envelope.next_attempt(**{"x-last-error": reason})
        try:
            await consumer.requeue(envelope, self.key, delay)
        except BaseException:
            consumer.settled(self, False)  # not stored: it comes back instead
            raise
        consumer.settled(self, True)

    async def dead_letter(self, reason: str) -> None:
        if not self._settle():
            return
        consumer = self.consumer
        attempt = self.envelope.attempt if self.envelope is not None else 1
        try:
            await consumer.bury(self, reason, attempt)
        except BaseException:
            consumer.settled(self, False)
            raise
        consumer.settled(self, True)

    async def release(self) -> None:
        """Not committed: it is read again — at once by this consumer if it is still open
        (it seeks back), else by whoever gets the partition next."""
        if self._settle():
            self.consumer.settled(self, False)

    def withdraw(self) -> bool:
        """Given back before any handler saw it (a rebalance, a close): False if it was
        settled already. The consumer does not seek back: the next reader gets it."""
        if not self._settle():
            return False
        self.offsets.release(self.offset)
        return True
