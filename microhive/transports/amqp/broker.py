"""Queues on RabbitMQ: durable queues, persistent messages, confirms, TTL retries, a DLX.

Topology for a queue ``jobs`` (``prefix`` goes before every name; see docs/transports/amqp.md):

- ``jobs``: durable, ``x-dead-letter-exchange: microhive:dead-letter`` and
  ``x-dead-letter-routing-key: jobs`` (messages RabbitMQ itself drops — overflow, a foreign
  consumer's reject — are dead-lettered, not lost), plus the length limit if configured;
- ``jobs:dead``: the dead-letter queue, bound to the direct exchange
  ``microhive:dead-letter`` with key ``jobs``;
- ``jobs:delay:<ms>``: one per delay (rounded up to two significant digits), with
  ``x-message-ttl: <ms>`` and dead-lettering back into ``jobs`` through the default
  exchange: a delayed send or a retry waits there, on disk, across restarts.

Messages are persistent and published with ``mandatory`` on a confirm channel: ``send``
returns once RabbitMQ confirmed, raises :class:`UnroutableError` when the message was
returned and :class:`QueueFull` when it was refused. Consumers get ``basic.qos`` prefetch
equal to their concurrency and ack manually after the handler; a retry publishes the next
attempt (confirmed) to a delay queue and then acks; a dead letter publishes the message with
its reason to the dead-letter exchange and then acks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiormq.exceptions as amqp_errors
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp import commands as spec

from ...broker import Consumer, DeadLetter, Delivery, QueueBroker
from ...capabilities import Capabilities
from ...declarations import Exchange, Queue
from ...envelope import Envelope, new_id
from ...errors import ConsumerClosed, TransportError, UnroutableError
from ...retry import Backoff
from ..handover import Handover
from . import wire
from .link import (
    Link,
    LinkDown,
    Pipeline,
    QueueFull,
    acquire,
    broken,
    cancelled_by_link,
    release,
)
from .options import AmqpOptions, Limits, delay_bucket, parse

log = logging.getLogger("microhive.amqp")

DELAY_EXPIRES = 3_600_000
"""A delay queue deletes itself when unused this long (ms) after its TTL; it is re-declared
(which renews the lease) at least every :data:`DELAY_REFRESH` seconds while in use."""

DELAY_REFRESH = 1800.0

RECOVER = Backoff(initial=0.1, factor=2.0, maximum=5.0, jitter=0.2)
"""Delays before a consumer whose channel failed (with the connection up) consumes again."""


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

    async def ack(self) -> None:
        if self._settle():
            self.consumer._ack(self)

    async def retry(self, delay: float, reason: str) -> None:
        if not self._settle():
            return
        assert self.envelope is not None, "an undecodable message cannot be retried"
        consumer = self.consumer
        if not consumer._current(self):
            return  # its channel is gone: RabbitMQ delivers the message again
        following = self.envelope.next_attempt(**{"x-last-error": reason})
        broker = consumer.broker
        try:
            data = broker.codec.encode(following)
            await broker._publish(consumer.queue, following, data, key=None, delay=delay)
        except asyncio.CancelledError:
            consumer._give_back(self)
            raise
        except Exception as exc:
            log.error(
                "could not schedule the retry of %s on %r (%s); returning it to the queue",
                self.envelope.id,
                consumer.queue,
                exc,
            )
            await consumer._requeue(self)
            return
        consumer._ack(self)

    async def dead_letter(self, reason: str) -> None:
        if not self._settle():
            return
        consumer = self.consumer
        if not consumer._current(self):
            return
        try:
            await consumer.broker._bury(consumer.queue, self, reason)
        except asyncio.CancelledError:
            consumer._give_back(self)
            raise
        except Exception as exc:
            log.error(
                "could not dead-letter a message of %r (%s); returning it to the queue",
                consumer.queue,
                exc,
            )
            await consumer._requeue(self)
            return
        consumer._ack(self)

    async def release(self) -> None:
        if self._settle():
            await self.consumer._requeue(self)


class AmqpConsumer(Consumer):
    """One ``basic.consume`` on a channel of its own, with ``basic.qos`` = prefetch."""

    def __init__(self, broker: AmqpBroker, queue: str, prefetch: int, name: str) -> None:
        self.broker = broker
        self.queue = queue
        self.amqp_queue = broker.options.queue(queue)
        self.prefetch = prefetch
        self.tag = f"{name or 'microhive'}.{new_id()[:8]}"
        self.closed = False
        self.handover: Handover[AmqpDelivery] = Handover()  # received, not yet taken
        self.unsettled = 0
        self.epoch = 0
        self.channel: AbstractChannel | None = None
        self.pipeline: Pipeline | None = None
        self._closing: asyncio.Task[None] | None = None
        self._order: deque[int] = deque()  # delivery tags not yet settled on the wire, in order
        self._acked: set[int] = set()  # acked by handlers, not yet sent
        self._gone: set[int] = set()  # settled on the wire one by one, still in _order
        self._flush_scheduled = False

    def __repr__(self) -> str:
        return f"<AmqpConsumer {self.tag} of {self.amqp_queue!r}>"

    async def start(self) -> None:
        link = self.broker.link
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
            self._direct(channel)
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
            await self.broker._declare(self.queue)
            await self.start()

    def _watch(self, channel: AbstractChannel) -> None:
        """Consume again when the channel closes or RabbitMQ cancels the consumer (a channel
        error, the queue deleted) while the connection stays up; a lost connection is the
        link's to resume."""

        def lost(*_: object) -> None:
            if not self.closed and channel is self.channel:
                asyncio.get_running_loop().create_task(self._recover(channel))

        channel.closing.add_done_callback(lost)
        channel.on_consumer_cancel_callbacks.add(lost)

    async def _recover(self, channel: AbstractChannel) -> None:
        link = self.broker._link
        if link is None:
            return
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
                self.broker._generation = -1  # the queue may be gone: declare it again
                await self.resume(link.generation)
                return
            except Exception as exc:
                log.error("%r could not consume again: %s", self, exc)

    def _current(self, delivery: AmqpDelivery) -> bool:
        channel = self.channel
        return delivery.epoch == self.epoch and channel is not None and not channel.is_closed

    async def _on_message(self, message: DeliveredMessage) -> None:
        """aiormq's consumer callback (a task per message); see :meth:`_direct`."""
        self._take(message)

    def _direct(self, channel: AbstractChannel) -> None:
        """Take deliveries straight from the channel's frame reader, without the task aiormq
        starts per message (a good part of the cost of a delivery). Only where this aiormq
        has the two channel methods it takes; otherwise the callback path is used."""
        read_header = getattr(channel, "_Channel__get_content_header", None)
        read_content = getattr(channel, "_read_content", None)
        if read_header is None or read_content is None:
            return
        take = self._take

        async def on_deliver_frame(frame: spec.Basic.Deliver) -> None:
            header = await read_header()
            take(await read_content(frame, header))

        channel._on_deliver_frame = on_deliver_frame  # type: ignore[attr-defined]

    def _take(self, message: DeliveredMessage) -> None:
        channel = message.channel
        tag: int = getattr(message.delivery, "delivery_tag", 0) or 0
        if channel is not self.channel:  # an old channel's delivery: give it back
            if not channel.is_closed:
                asyncio.get_running_loop().create_task(_give_back(channel, tag))
            return
        if self.closed:
            if self.pipeline is not None and self.pipeline.open:
                self.pipeline.send(wire.nack_frame(channel.number, tag, True))
            return
        envelope, error = wire.incoming(
            self.broker.codec, message.body, message.header.properties, self.queue
        )
        delivery = AmqpDelivery(self, tag, self.epoch, message.body, envelope, error)
        self.unsettled += 1
        self._order.append(tag)
        self.handover.give(delivery)

    async def get(self) -> Delivery:
        if self.closed:
            raise ConsumerClosed(self.amqp_queue)
        return await self.handover.take()

    def _ack(self, delivery: AmqpDelivery) -> None:
        """Acknowledge, coalesced: the acks of one event-loop iteration leave together, as one
        ``multiple`` ack for the settled run at the head of the delivery order, plus single
        acks for the others (handlers finish out of order)."""
        if not self._current(delivery):
            return
        self.unsettled -= 1
        self._acked.add(delivery.tag)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_acks)
        self._maybe_finish()

    def _flush_acks(self) -> None:
        self._flush_scheduled = False
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

    async def _requeue(self, delivery: AmqpDelivery) -> None:
        """Give the message back, first in line; returns once RabbitMQ has processed it."""
        if not self._current(delivery):
            return
        self.unsettled -= 1
        pipeline, channel = self.pipeline, self.channel
        if pipeline is not None and channel is not None and pipeline.open:
            with contextlib.suppress(Exception):
                self._nack(pipeline, delivery.tag)
                await pipeline.drain()
                await channel.basic_qos(prefetch_count=self.prefetch)  # a round trip: processed
        self._maybe_finish()

    def _give_back(self, delivery: AmqpDelivery) -> None:
        """Requeue without waiting (a retry or dead letter was cancelled half-way)."""
        if not self._current(delivery):
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
            self.broker.consumers.discard(self)
            channel, self.channel = self.channel, None
            self._closing = asyncio.get_running_loop().create_task(
                self._close_channel(channel, self.pipeline)
            )
            self.broker._closing.add(self._closing)
            self._closing.add_done_callback(self.broker._closing.discard)

    async def _close_channel(self, channel: AbstractChannel, pipeline: Pipeline | None) -> None:
        self._flush_acks()
        if pipeline is not None:
            with contextlib.suppress(Exception):
                await pipeline.drain()
            pipeline.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(channel.close(), 5)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.broker._link is not None:
            self.broker._link.unregister(self)
        channel, pipeline = self.channel, self.pipeline
        self.handover.fail(ConsumerClosed(self.amqp_queue))
        if channel is None or channel.is_closed or pipeline is None:
            self.handover.clear()
            self.broker.consumers.discard(self)
            return
        try:
            await channel.basic_cancel(self.tag)
        except Exception as exc:
            log.debug("cancelling %r: %s", self, exc)
        returned = self.handover.clear()
        for delivery in returned:
            if delivery._settle():
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
        self.handover.fail(ConsumerClosed(self.amqp_queue))
        self.handover.clear()
        channel, self.channel = self.channel, None
        if channel is not None:
            await self._close_channel(channel, self.pipeline)
        if self._closing is not None:  # acks of a graceful close go out before the connection
            with contextlib.suppress(Exception):
                await self._closing


class AmqpBroker(QueueBroker):
    """``amqp://user:password@host:port/vhost?prefix=...``: queues on RabbitMQ.

    ``limits`` maps queue names to :class:`Limits` (length limit and overflow policy); the
    URL's ``max_length``, ``max_length_bytes`` and ``overflow`` apply to the other queues.
    """

    capabilities = Capabilities(
        out_of_process=True,
        durable=True,
        delayed_delivery=True,
        dead_letter=True,
        replay=False,
        routing=True,
    )

    def __init__(
        self,
        url: str = "amqp://guest:guest@127.0.0.1:5672/",
        *,
        limits: Mapping[str, Limits] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(url, **options)
        self.options: AmqpOptions = parse(url)
        self.limits = dict(limits or {})
        self._link: Link | None = None
        self._generation = -1
        self._declared: set[str] = set()
        self._declaring: dict[str, asyncio.Future[None]] = {}
        self._delays: dict[str, dict[int, float]] = {}
        self._delay_declared: dict[str, float] = {}
        self._content_type = self.codec.content_type
        self.consumers: set[AmqpConsumer] = set()
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def link(self) -> Link:
        if self._link is None:
            raise LinkDown(f"{self!r} is not connected")
        return self._link

    async def _connect(self) -> None:
        # QueueBroker.connect() serializes first connects: one link per broker
        if self._link is None:
            self._link = await acquire(self.options)
            self._link.register(self, self._resume)

    async def _close(self) -> None:
        link = self._link
        for consumer in list(self.consumers):
            if link is not None:
                link.unregister(consumer)
            await consumer.abort()
        self.consumers.clear()
        if self._closing:  # consumers closing gracefully: their last acks go out first
            await asyncio.wait(list(self._closing), timeout=10)
        self._link = None
        if link is not None:
            link.unregister(self)
            await release(link)

    async def _resume(self, generation: int) -> None:
        self._generation = -1  # everything is declared again, lazily

    # -- declarations ------------------------------------------------------------------------

    def _fresh(self) -> None:
        generation = self.link.generation
        if generation != self._generation:
            self._generation = generation
            self._declared.clear()
            self._declaring.clear()
            self._delay_declared.clear()

    async def _once(self, key: str, declare: Any) -> None:
        """Run ``declare()`` once per connection generation; concurrent callers share it."""
        self._fresh()
        if key in self._declared:
            return
        pending = self._declaring.get(key)
        if pending is None:
            pending = self._declaring[key] = asyncio.ensure_future(declare())
            try:
                await asyncio.shield(pending)
            except BaseException:
                self._declaring.pop(key, None)
                raise
            self._declaring.pop(key, None)
            self._declared.add(key)
        else:
            await asyncio.shield(pending)

    async def _declare(self, queue: str) -> None:
        """Declare ``queue``'s topology (once per connection)."""
        if self._generation == self.link.generation and queue in self._declared:
            return
        await self._once(queue, lambda: self._declare_now(queue))

    async def _declare_now(self, queue: str) -> None:
        options = self.options
        name, dead = options.queue(queue), options.dead(queue)
        dlx = options.dead_letter_exchange
        extra: dict[str, Any] = {}
        if options.queue_type != "classic":
            extra["x-queue-type"] = options.queue_type
        channel = await self.link.rpc()
        try:
            await channel.exchange_declare(dlx, exchange_type="direct", durable=True)
            await channel.queue_declare(dead, durable=True, arguments=extra or None)
            await channel.queue_bind(dead, dlx, routing_key=name)
            arguments = {
                "x-dead-letter-exchange": dlx,
                "x-dead-letter-routing-key": name,
                **extra,
                **self.limits.get(queue, options.limits).arguments(),
            }
            try:
                await channel.queue_declare(name, durable=True, arguments=arguments)
            except amqp_errors.ChannelPreconditionFailed as exc:
                self.link.discard(channel)
                log.warning(
                    "queue %r exists with other arguments (%s); using it as it is, without "
                    "microhive's dead-letter exchange and length limit",
                    name,
                    exc,
                )
                channel = await self.link.rpc()
                await channel.queue_declare(name, passive=True)
        except Exception as exc:
            raise self.link.translate(exc) from exc

    async def _declare_delay(self, queue: str, milliseconds: int) -> str:
        options = self.options
        name = options.delay(queue, milliseconds)
        now = time.monotonic()
        self._fresh()
        declared = self._delay_declared.get(name)
        if declared is None or now - declared > DELAY_REFRESH:
            channel = await self.link.rpc()
            try:
                await channel.queue_declare(
                    name,
                    durable=True,
                    arguments={
                        "x-message-ttl": milliseconds,
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": options.queue(queue),
                        "x-expires": milliseconds + DELAY_EXPIRES,
                    },
                )
            except Exception as exc:
                raise self.link.translate(exc) from exc
            self._delay_declared[name] = now
            self._delays.setdefault(queue, {})[milliseconds] = now
        return name

    async def _bind(self, queue: Queue) -> None:
        await self._declare(queue.name)
        await self._once(f"bindings of {queue.name}", lambda: self._bind_now(queue))

    async def _bind_now(self, queue: Queue) -> None:
        channel = await self.link.rpc()
        try:
            for exchange in queue.exchanges:
                await self._declare_exchange(channel, exchange)
            for binding in queue.bindings:
                await channel.queue_bind(
                    self.options.queue(queue.name),
                    self.options.exchange(binding.exchange.name),
                    routing_key=binding.key,
                )
        except Exception as exc:
            raise self.link.translate(exc) from exc

    async def _declare_exchange(self, channel: AbstractChannel, exchange: Exchange) -> None:
        name = self.options.exchange(exchange.name)
        try:
            await channel.exchange_declare(name, exchange_type=exchange.type, durable=True)
        except amqp_errors.ChannelPreconditionFailed:
            self.link.discard(channel)
            raise TransportError(
                f"exchange {name!r} exists with another type than {exchange.type!r}"
            ) from None

    # -- publishing ----------------------------------------------------------------------------

    async def _publish(
        self, queue: str, envelope: Envelope, data: bytes, *, key: str | None, delay: float
    ) -> None:
        header = wire.message_properties(envelope, self._content_type)
        await self._deliver_to_queue(queue, header, data, envelope.id, delay)

    async def _deliver_to_queue(
        self, queue: str, header: bytes, data: bytes, message_id: str, delay: float = 0.0
    ) -> None:
        link = self.link
        deadline = asyncio.get_running_loop().time() + self.options.retry_timeout
        while True:
            try:
                if self._generation != link.generation or queue not in self._declared:
                    await self._declare(queue)
                if delay > 0:
                    routing_key = await self._declare_delay(queue, delay_bucket(delay))
                else:
                    routing_key = self.options.queue(queue)
                await self._confirmed("", routing_key, header, data, message_id, deadline)
                return
            except UnroutableError:
                self._generation = -1  # the queue was deleted behind our back: declare again
                raise UnroutableError(
                    f"message to queue {queue!r} was returned by RabbitMQ as unroutable "
                    "(was the queue deleted?)"
                ) from None
            except LinkDown:
                await link.ensure(deadline)

    async def _confirmed(
        self,
        exchange: str,
        routing_key: str,
        header: bytes,
        data: bytes,
        message_id: str,
        deadline: float,
    ) -> None:
        """Publish (mandatory) and wait for the confirm; :class:`LinkDown` after a loss."""
        link = self.link
        pipeline = link._confirms
        try:
            if pipeline is None or not pipeline.open or not link.up:
                pipeline = await link.confirms(deadline)
            if pipeline.in_flight >= pipeline.window:
                async with asyncio.timeout_at(deadline):
                    await pipeline.room()
            confirm = pipeline.publish(
                exchange, routing_key, header, data, mandatory=True, message_id=message_id
            )
            assert confirm is not None
            if confirm.done():
                confirm.result()
            else:
                async with asyncio.timeout_at(deadline):
                    await confirm
        except TimeoutError:
            raise TransportError(
                f"RabbitMQ at {self.options.safe_url} did not confirm a message for "
                f"{routing_key!r} within {self.options.retry_timeout:g} s (the connection may "
                "be blocked by a resource alarm); it may still arrive"
            ) from None
        except amqp_errors.PublishError:
            raise UnroutableError(
                f"RabbitMQ returned a message to exchange {exchange!r} with routing key "
                f"{routing_key!r}: no queue is bound for it"
            ) from None
        except amqp_errors.DeliveryError:
            raise QueueFull(
                f"RabbitMQ refused a message for {routing_key!r} (the queue is full and its "
                "overflow policy is reject-publish)"
            ) from None
        except asyncio.CancelledError as exc:
            if cancelled_by_link(exc):
                raise LinkDown("channel closed before the confirm") from None
            raise
        except Exception as exc:
            if broken(exc):
                raise LinkDown(str(exc)) from exc
            raise link.translate(exc) from exc

    async def _publish_routed(
        self, exchange: Exchange, routing_key: str, envelope: Envelope, data: bytes
    ) -> None:
        link = self.link
        header = wire.message_properties(envelope, self._content_type)
        name = self.options.exchange(exchange.name)
        deadline = asyncio.get_running_loop().time() + self.options.retry_timeout
        while True:
            try:
                await self._once(
                    f"exchange {name} {exchange.type}", lambda: self._exchange_now(exchange)
                )
                await self._confirmed(name, routing_key, header, data, envelope.id, deadline)
                return
            except UnroutableError:
                raise UnroutableError(
                    f"no queue is bound to exchange {exchange.name!r} for routing key "
                    f"{routing_key!r}"
                ) from None
            except LinkDown:
                await link.ensure(deadline)

    async def _exchange_now(self, exchange: Exchange) -> None:
        channel = await self.link.rpc()
        try:
            await self._declare_exchange(channel, exchange)
        except TransportError:
            raise
        except Exception as exc:
            raise self.link.translate(exc) from exc

    async def _bury(self, queue: str, delivery: AmqpDelivery, reason: str) -> None:
        """Publish ``delivery`` to the dead-letter exchange with why, when, which attempt."""
        envelope = delivery.envelope
        headers: dict[str, Any] = {
            "x-reason": reason,
            "x-attempt": envelope.attempt if envelope is not None else 1,
            "x-queue": queue,
            "x-dead-at": datetime.fromtimestamp(time.time(), UTC),
        }
        if envelope is not None and envelope.headers:
            headers.update({k: v for k, v in envelope.headers.items() if k not in headers})
        header = wire.properties(
            content_type=self._content_type,
            delivery_mode=wire.PERSISTENT,
            message_id=envelope.id if envelope is not None else None,
            app_id=(envelope.sender or None) if envelope is not None else None,
            kind=envelope.kind.value if envelope is not None else None,
            timestamp=envelope.sent_at if envelope is not None else None,
            headers=headers,
        )
        link = self.link
        deadline = asyncio.get_running_loop().time() + self.options.retry_timeout
        message_id = envelope.id if envelope is not None else new_id()
        while True:
            try:
                await self._declare(queue)
                await self._confirmed(
                    self.options.dead_letter_exchange,
                    self.options.queue(queue),
                    header,
                    delivery.raw,
                    message_id,
                    deadline,
                )
                return
            except LinkDown:
                await link.ensure(deadline)

    async def publish_raw(
        self, queue: str, data: bytes, *, properties: bytes | None = None
    ) -> None:
        """Enqueue bytes as they are, as a foreign producer would (tests of bad input)."""
        await self.connect()
        header = properties or wire.properties(delivery_mode=wire.PERSISTENT)
        await self._deliver_to_queue(queue, header, data, new_id())

    # -- queries ---------------------------------------------------------------------------

    async def _count(self, name: str) -> int | None:
        channel = await self.link.rpc()
        try:
            result = await channel.queue_declare(name, passive=True)
        except amqp_errors.ChannelNotFoundEntity:
            self.link.discard(channel)
            return None
        except Exception as exc:
            raise self.link.translate(exc) from exc
        return int(result.message_count or 0)

    async def _length(self, queue: str) -> int:
        """Ready messages, plus those waiting in delay queues this process used, plus those
        this process holds unsettled. (AMQP 0-9-1 cannot count what other processes hold.)"""
        await self._declare(queue)
        total = await self._count(self.options.queue(queue)) or 0
        delays = self._delays.get(queue, {})
        for milliseconds in list(delays):
            count = await self._count(self.options.delay(queue, milliseconds))
            if count is None:
                delays.pop(milliseconds, None)
            else:
                total += count
        for consumer in self.consumers:
            if consumer.queue == queue:
                total += max(0, consumer.unsettled)
        return total

    async def _dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        """Browse the dead-letter queue: take up to ``limit`` without acking, then close the
        channel so RabbitMQ puts them all back in their places."""
        await self._declare(queue)
        channel = await self.link.channel()
        letters: list[DeadLetter] = []
        try:
            for _ in range(max(0, limit)):
                message = await channel.basic_get(self.options.dead(queue), no_ack=False)
                if not isinstance(message.delivery, spec.Basic.GetOk):
                    break
                letters.append(self._letter(queue, message))
        except Exception as exc:
            raise self.link.translate(exc) from exc
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), 5)
        return letters

    def _letter(self, queue: str, message: DeliveredMessage) -> DeadLetter:
        props = message.header.properties
        headers = props.headers or {}
        envelope, _ = wire.incoming(self.codec, message.body, props, queue)
        reason = _text(headers.get("x-reason"))
        attempt = headers.get("x-attempt")
        stamp: Any = headers.get("x-dead-at")
        dead_at = stamp.timestamp() if isinstance(stamp, datetime) else None
        if reason is None:  # dead-lettered by RabbitMQ itself (overflow, reject, expiry)
            deaths: Any = headers.get("x-death") or [{}]
            first: Any = deaths[0] if isinstance(deaths, list) and deaths else {}
            if not isinstance(first, dict):
                first = {}
            why = _text(first.get("reason")) or "dead-lettered"
            reason = f"{why} (by RabbitMQ)"
            stamp = first.get("time")
            dead_at = stamp.timestamp() if hasattr(stamp, "timestamp") else None
        if not isinstance(attempt, int) or isinstance(attempt, bool):
            attempt = envelope.attempt if envelope is not None else 1
        if not isinstance(dead_at, int | float) or isinstance(dead_at, bool):
            dead_at = time.time()
        return DeadLetter(
            queue=queue,
            reason=reason,
            raw=message.body,
            envelope=envelope,
            attempt=attempt,
            dead_at=float(dead_at),
        )

    # -- consuming -------------------------------------------------------------------------

    async def _consume(self, queue: str, *, prefetch: int, name: str) -> Consumer:
        link = self.link
        deadline = asyncio.get_running_loop().time() + self.options.retry_timeout
        while True:
            try:
                await self._declare(queue)
                consumer = AmqpConsumer(self, queue, prefetch, name)
                await consumer.start()
                break
            except LinkDown:
                await link.ensure(deadline)
        self.consumers.add(consumer)
        link.register(consumer, consumer.resume)
        return consumer


async def _give_back(channel: AbstractChannel, tag: int) -> None:
    with contextlib.suppress(Exception):
        await channel.basic_nack(tag, requeue=True, wait=False)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None
