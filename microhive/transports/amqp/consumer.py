"""A consumer of one queue (its own channel, ``basic.qos`` = prefetch, manual acks), and
its deliveries: where a message is acked, requeued, retried or dead-lettered.

A delivery settles through its consumer (:meth:`AmqpConsumer.acked`, :meth:`~AmqpConsumer.
requeue`, :meth:`~AmqpConsumer.give_back`), and a retry or a dead letter goes through the
consumer's :class:`Outlet` (the broker): it is published, confirmed, *then* the delivery is
acked. A delivery from a channel that is gone is not settled at all: RabbitMQ delivers it
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Protocol

from aiormq.abc import AbstractChannel, DeliveredMessage

from ...broker import Consumer, Delivery
from ...codecs import Codec
from ...declarations import Queue
from ...envelope import Envelope, new_id
from ...errors import ConsumerClosed
from ...retry import Backoff
from ..handover import Handover
from ..links import LinkDown
from . import wire
from .delivery import AmqpDelivery
from .link import Link
from .pipeline import Pipeline, take_directly
from .reader import deliver_directly

log = logging.getLogger("microhive.amqp")

RECOVER = Backoff(initial=0.1, factor=2.0, maximum=5.0, jitter=0.2)
"""Delays before a consumer whose channel failed (with the connection up) consumes again."""


ACK_DELAY = 0.002
"""How long the first of a consumer's acks may wait for others to leave with it (seconds).
A socket write costs more than the acks it carries; the messages whose acks wait were
handled already and their results are written, so only prefetch slots wait (and a quarter
of the window waiting sends them at once: a consumer with a small prefetch is not slowed)."""


class Outlet(Protocol):
    """What a consumer needs from its broker."""

    codec: Codec

    @property
    def link(self) -> Link: ...

    def declaration(self, name: str) -> Queue:
        """The declaration of queue ``name`` (what a foreign body is adopted as)."""

    async def declare_queue(self, queue: str, *, again: bool = False) -> None:
        """Declare ``queue`` (``again``: even if it was declared on this connection)."""

    async def retry_later(self, queue: str, envelope: Envelope, delay: float) -> None:
        """Publish the next attempt, confirmed, to be delivered after ``delay`` seconds."""

    async def bury(self, queue: str, raw: bytes, envelope: Envelope | None, reason: str) -> None:
        """Publish the message, confirmed, to ``queue``'s dead letters with ``reason``."""

    def finished(self, consumer: AmqpConsumer, closing: asyncio.Task[None] | None) -> None:
        """``consumer`` is done; ``closing`` (if any) closes its channel."""


class AmqpConsumer(Consumer):
    """One ``basic.consume`` on a channel of its own, with ``basic.qos`` = prefetch."""

    def __init__(
        self, outlet: Outlet, queue: str, amqp_queue: str, prefetch: int, name: str
    ) -> None:
        self.outlet = outlet
        self.queue = queue
        self.declared = outlet.declaration(queue)
        self.amqp_queue = amqp_queue
        self.prefetch = prefetch
        self.tag = f"{name or 'microhive'}.{new_id()[:8]}"
        self.closed = False
        self.handover: Handover[AmqpDelivery] = Handover()  # received, not yet taken
        self.unsettled = 0
        self.epoch = 0
        self.channel: AbstractChannel | None = None
        self.pipeline: Pipeline | None = None
        self._closing: asyncio.Task[None] | None = None
        self._recovering: asyncio.Task[None] | None = None
        self._returning: set[asyncio.Task[None]] = set()  # an old channel's deliveries
        self._order: deque[int] = deque()  # delivery tags not yet settled on the wire, in order
        self._acked: set[int] = set()  # acked by handlers, not yet sent
        self._gone: set[int] = set()  # settled on the wire one by one, still in _order
        self._flushing: asyncio.Handle | None = None  # the next _flush_acks

    def __repr__(self) -> str:
        return f"<AmqpConsumer {self.tag} of {self.amqp_queue!r}>"

    async def start(self) -> None:
        link = self.outlet.link
        channel = await link.channel()
        try:
            await channel.basic_qos(prefetch_count=self.prefetch)
            self.epoch += 1
            if self.pipeline is not None:
                self.pipeline.stop()  # the old channel's (after a reconnect)
            self.channel = channel
            self.pipeline = Pipeline(channel, 0)
            self.handover.clear()
            self.unsettled = 0
            self._order.clear()
            self._acked.clear()
            self._gone.clear()
            take_directly(channel, self._take)  # what comes before the next line, or without it
            deliver_directly(channel, self._take)
            await channel.basic_consume(
                self.amqp_queue, self._on_message, consumer_tag=self.tag, no_ack=False
            )
            self._watch(channel)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await channel.close()
            if isinstance(exc, Exception):
                raise link.translate(exc) from exc
            raise

    async def resume(self, generation: int) -> None:
        if not self.closed:
            await self.outlet.declare_queue(self.queue)
            await self.start()

    def _watch(self, channel: AbstractChannel) -> None:
        """Consume again when the channel closes or RabbitMQ cancels the consumer (a channel
        error, the queue deleted) while the connection stays up; a lost connection is the
        link's to resume."""

        def lost(*_: object) -> None:
            if self.closed or channel is not self.channel:
                return
            if self._recovering is None or self._recovering.done():
                self._recovering = asyncio.get_running_loop().create_task(
                    self._recover(channel), name=f"amqp-recover {self!r}"
                )

        channel.closing.add_done_callback(lost)
        channel.on_consumer_cancel_callbacks.add(lost)

    async def _recover(self, channel: AbstractChannel) -> None:
        try:
            link = self.outlet.link
        except LinkDown:
            return  # the broker is closed
        generation = link.generation
        attempt = 0
        while (
            not self.closed
            and channel is self.channel
            and link.up
            and link.generation == generation
        ):
            attempt += 1
            await asyncio.sleep(RECOVER.delay(attempt))
            if self.closed or channel is not self.channel or not link.up:
                return
            if link.generation != generation:
                return  # reconnected meanwhile: the link resumed this consumer
            log.warning("%r lost its channel or was cancelled; consuming again", self)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), 5)
            try:
                if not self.closed:  # the queue may be gone: declare it again
                    await self.outlet.declare_queue(self.queue, again=True)
                    await self.start()
                return
            except Exception as exc:
                log.error("%r could not consume again: %s", self, exc)

    def holds(self, delivery: AmqpDelivery) -> bool:
        """Whether ``delivery`` came on the current channel (else it cannot be settled)."""
        channel = self.channel
        return delivery.epoch == self.epoch and channel is not None and not channel.is_closed

    async def _on_message(self, message: DeliveredMessage) -> None:
        """aiormq's consumer callback (a task per message), where :func:`take_directly`
        cannot be used."""
        self._take(message)

    def _take(self, message: DeliveredMessage) -> None:
        channel = message.channel
        tag: int = getattr(message.delivery, "delivery_tag", 0) or 0
        if channel is not self.channel:  # an old channel's delivery: give it back
            if not channel.is_closed:
                task = asyncio.get_running_loop().create_task(_give_back(channel, tag))
                self._returning.add(task)
                task.add_done_callback(self._returning.discard)
            return
        if self.closed:
            if self.pipeline is not None and self.pipeline.open:
                self.pipeline.send(wire.nack_frame(channel.number, tag, True))
            return
        envelope, error = wire.incoming(
            self.outlet.codec,
            message.body,
            message.header.properties,
            self.declared,
            getattr(message.delivery, "routing_key", None),
        )
        delivery = AmqpDelivery(self, tag, self.epoch, message.body, envelope, error)
        self.unsettled += 1
        self._order.append(tag)
        self.handover.give(delivery)

    async def get(self) -> Delivery:
        if self.closed:
            raise ConsumerClosed(self.amqp_queue)
        return await self.handover.take()

    def ready(self, limit: int) -> list[Delivery]:
        return list(self.handover.take_now(limit))

    def acked(self, delivery: AmqpDelivery) -> None:
        """Acknowledge, coalesced: acks leave together, as one ``multiple`` ack for the
        settled run at the head of the delivery order plus single acks for the others
        (handlers finish out of order), :data:`ACK_DELAY` after the first of them, or at the
        end of this event-loop iteration once a quarter of the prefetch window waits."""
        if not self.holds(delivery):
            return
        self.unsettled -= 1
        self._acked.add(delivery.tag)
        flushing = self._flushing
        if len(self._acked) * 4 >= self.prefetch:
            if flushing is None or isinstance(flushing, asyncio.TimerHandle):
                if flushing is not None:
                    flushing.cancel()
                self._flushing = asyncio.get_running_loop().call_soon(self._flush_acks)
        elif flushing is None:
            self._flushing = asyncio.get_running_loop().call_later(ACK_DELAY, self._flush_acks)
        self._maybe_finish()

    def _flush_acks(self) -> None:
        if self._flushing is not None:
            self._flushing.cancel()  # when called directly (closing): the scheduled one
            self._flushing = None
        acked, gone, order = self._acked, self._gone, self._order
        if not acked:
            return
        pipeline = self.pipeline
        if pipeline is None or not pipeline.open:
            acked.clear()
            return
        last = 0
        while order and (order[0] in acked or order[0] in gone):
            tag = order.popleft()
            if tag in acked:
                acked.discard(tag)
                last = tag
            else:
                gone.discard(tag)
        number = pipeline.number
        frames = [wire.ack_frame(number, last, multiple=True)] if last else []
        for tag in acked:
            frames.append(wire.ack_frame(number, tag))
            gone.add(tag)
        acked.clear()
        with contextlib.suppress(LinkDown):
            pipeline.send(b"".join(frames))

    async def requeue(self, delivery: AmqpDelivery) -> None:
        """Give the message back, first in line; returns once RabbitMQ has processed it."""
        if not self.holds(delivery):
            return
        self.unsettled -= 1
        pipeline, channel = self.pipeline, self.channel
        if pipeline is not None and channel is not None and pipeline.open:
            with contextlib.suppress(Exception):
                self._nack(pipeline, delivery.tag)
                await pipeline.drain()
                await channel.basic_qos(prefetch_count=self.prefetch)  # a round trip: processed
        self._maybe_finish()

    def give_back(self, delivery: AmqpDelivery) -> None:
        """Requeue without waiting (a retry or dead letter was cancelled half-way)."""
        if not self.holds(delivery):
            return
        self.unsettled -= 1
        pipeline = self.pipeline
        if pipeline is not None and pipeline.open:
            with contextlib.suppress(LinkDown):
                self._nack(pipeline, delivery.tag)
        self._maybe_finish()

    def _nack(self, pipeline: Pipeline, tag: int) -> None:
        """Requeue ``tag`` now (before any later multiple ack could cover it)."""
        self._gone.add(tag)
        pipeline.send(wire.nack_frame(pipeline.number, tag, True))

    def _maybe_finish(self) -> None:
        if self.closed and self.unsettled <= 0 and self.channel is not None:
            channel, self.channel = self.channel, None
            self._closing = asyncio.get_running_loop().create_task(
                self._close_channel(channel, self.pipeline), name=f"amqp-close {self!r}"
            )
            self.outlet.finished(self, self._closing)

    async def _close_channel(self, channel: AbstractChannel, pipeline: Pipeline | None) -> None:
        self._flush_acks()
        if pipeline is not None:
            with contextlib.suppress(Exception):
                await pipeline.drain()
            await pipeline.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(channel.close(), 5)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(LinkDown):  # (the broker may be closed already)
            self.outlet.link.unregister(self)
        await self._stop_tasks()
        channel, pipeline = self.channel, self.pipeline
        self.handover.fail(ConsumerClosed(self.amqp_queue))
        if channel is None or channel.is_closed or pipeline is None:
            self.handover.clear()
            self.outlet.finished(self, None)
            return
        try:
            await channel.basic_cancel(self.tag)
        except Exception as exc:
            log.debug("cancelling %r: %s", self, exc)
        returned = self.handover.clear()
        for delivery in returned:
            if delivery.withdraw():
                self.unsettled -= 1
                with contextlib.suppress(LinkDown):
                    self._nack(pipeline, delivery.tag)
        if returned:
            with contextlib.suppress(Exception):
                await pipeline.drain()
                await channel.basic_qos(prefetch_count=self.prefetch)
        self._maybe_finish()

    async def abort(self) -> None:
        """Close the channel now: everything unsettled goes back to the queue."""
        self.closed = True
        await self._stop_tasks()
        self.handover.fail(ConsumerClosed(self.amqp_queue))
        self.handover.clear()
        channel, self.channel = self.channel, None
        if channel is not None:
            await self._close_channel(channel, self.pipeline)
        elif self.pipeline is not None:
            await self.pipeline.close()
        if self._closing is not None:  # acks of a graceful close go out before the connection
            with contextlib.suppress(Exception):
                await self._closing

    async def _stop_tasks(self) -> None:
        """End the consumer's own background tasks: none may outlive it."""
        tasks = [*self._returning]
        if self._recovering is not None and self._recovering is not asyncio.current_task():
            self._recovering.cancel()
            tasks.append(self._recovering)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def _give_back(channel: AbstractChannel, tag: int) -> None:
    with contextlib.suppress(Exception):
        await channel.basic_nack(tag, requeue=True, wait=False)
