"""Queues on RabbitMQ: durable queues, persistent messages, confirms, TTL retries, a DLX.

The pieces: :mod:`.topology` declares queues and exchanges, :mod:`.delayer` the delay
queues, :mod:`.confirms` publishes and waits for the confirm, :mod:`.consumer` consumes and
settles, all on the process's shared :mod:`.link`. This module puts them together.

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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pamqp import commands as spec

from ...broker import Consumer, DeadLetter, QueueBroker
from ...capabilities import Capabilities
from ...deadletters import Selection, requeued
from ...declarations import Exchange, Queue
from ...envelope import Envelope, new_id
from ...errors import TransportError, UnroutableError
from ...stats import QueueStats
from ..links import LinkDown
from . import wire
from .confirms import confirmed
from .consumer import AmqpConsumer
from .delayer import Delayer
from .link import Link, acquire, release
from .options import AmqpOptions, Limits, parse
from .topology import Topology

log = logging.getLogger("microhive.amqp")


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
        self._names: dict[str, str] = {}
        self._declarations: dict[str, Queue] = {}
        self.topology = Topology(self.options, self.limits, lambda: self.link, self.amqp_name)
        self.delayer = Delayer(self.options, self.topology)
        self._content_type = self.codec.content_type
        self.consumers: set[AmqpConsumer] = set()
        self._closing: set[asyncio.Task[None]] = set()

    def declaration(self, name: str) -> Queue:
        """As :meth:`QueueBroker.declaration`, remembered (it is looked up on every send)."""
        found = self._declarations.get(name)
        if found is None:
            found = self._declarations[name] = super().declaration(name)
        return found

    def amqp_name(self, queue: str) -> str:
        """The AMQP queue of ``queue``: its declaration's ``address`` verbatim, else the
        prefixed name."""
        found = self._names.get(queue)
        if found is None:
            address = self.declaration(queue).address
            found = self._names[queue] = address or self.options.queue(queue)
        return found

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
            for task in list(self._closing):
                task.cancel()
            await asyncio.gather(*self._closing, return_exceptions=True)
        self._link = None
        if link is not None:
            link.unregister(self)
            await release(link)

    async def _resume(self, generation: int) -> None:
        self.topology.forget()  # everything is declared again, lazily

    # -- what consumers and deliveries use (consumer.Outlet) ---------------------------------

    async def declare_queue(self, queue: str, *, again: bool = False) -> None:
        if again:
            self.topology.forget()
        await self.topology.queue(queue)

    async def retry_later(self, queue: str, envelope: Envelope, delay: float) -> None:
        await self._publish(queue, envelope, self.codec.encode(envelope), key=None, delay=delay)

    async def bury(self, queue: str, raw: bytes, envelope: Envelope | None, reason: str) -> None:
        """Publish to the dead-letter exchange, with why, when, which attempt."""
        header = wire.dead_letter_properties(
            self.declaration(queue), envelope, reason, self._content_type
        )
        link = self.link
        deadline = asyncio.get_running_loop().time() + self.options.retry_timeout
        message_id = envelope.id if envelope is not None else new_id()
        while True:
            try:
                through = link.ready_confirms() or await link.confirms(deadline)
                if not self.topology.ready(queue, through.generation):
                    await self.topology.queue(queue)
                await confirmed(
                    link,
                    through,
                    self.options.dead_letter_exchange,
                    self.amqp_name(queue),
                    header,
                    raw,
                    message_id,
                    deadline,
                )
                return
            except LinkDown:
                await link.ensure(deadline)

    def finished(self, consumer: AmqpConsumer, closing: asyncio.Task[None] | None) -> None:
        self.consumers.discard(consumer)
        if closing is not None and not closing.done():
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    # -- publishing ----------------------------------------------------------------------------

    async def _publish(
        self, queue: str, envelope: Envelope, data: bytes, *, key: str | None, delay: float
    ) -> None:
        form = self.declaration(queue).payload
        if form == "json":
            header = wire.message_properties(envelope, self._content_type)
        else:  # the payload itself, for plain consumers of a text or bytes queue
            header = wire.payload_properties(envelope, form)
            data = wire.payload_body(envelope, form)
        await self._deliver_to_queue(queue, header, data, envelope.id, delay)

    async def _deliver_to_queue(
        self, queue: str, header: bytes, data: bytes, message_id: str, delay: float = 0.0
    ) -> None:
        """Publish to ``queue`` (through a delay queue when ``delay``), confirmed.

        The queue is declared on the connection the message goes out on: a send that waited
        for a reconnect declares it again before publishing (after a crash of the node, a
        queue declared just before may be gone).
        """
        link, topology = self.link, self.topology
        deadline = asyncio.get_running_loop().time() + self.options.retry_timeout
        while True:
            try:
                through = link.ready_confirms() or await link.confirms(deadline)
                if not topology.ready(queue, through.generation):
                    await topology.queue(queue)
                if delay > 0:
                    routing_key = await self.delayer.route(queue, delay)
                else:
                    routing_key = self.amqp_name(queue)
                await confirmed(link, through, "", routing_key, header, data, message_id, deadline)
                return
            except UnroutableError:
                topology.forget()  # the queue was deleted behind our back: declare it again
                raise UnroutableError(
                    f"message to queue {queue!r} was returned by RabbitMQ as unroutable "
                    "(was the queue deleted?)"
                ) from None
            except LinkDown:
                await link.ensure(deadline)

    async def _bind(self, queue: Queue) -> None:
        await self.topology.bind(queue)

    async def _publish_routed(
        self, exchange: Exchange, routing_key: str, envelope: Envelope, data: bytes
    ) -> None:
        link, topology = self.link, self.topology
        header = wire.message_properties(envelope, self._content_type)
        name = self.options.exchange(exchange.name)
        deadline = asyncio.get_running_loop().time() + self.options.retry_timeout
        while True:
            try:
                through = link.ready_confirms() or await link.confirms(deadline)
                if not topology.exchange_ready(exchange, through.generation):
                    await topology.exchange(exchange)
                await confirmed(
                    link, through, name, routing_key, header, data, envelope.id, deadline
                )
                return
            except UnroutableError:
                raise UnroutableError(
                    f"no queue is bound to exchange {exchange.name!r} for routing key "
                    f"{routing_key!r}"
                ) from None
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

    async def _length(self, queue: str) -> int:
        """Ready messages, plus those waiting in delay queues this process used, plus those
        this process holds unsettled. (AMQP 0-9-1 cannot count what other processes hold.)"""
        await self.topology.queue(queue)
        total = await self.topology.count(self.amqp_name(queue)) or 0
        total += await self.delayer.waiting(queue)
        for consumer in self.consumers:
            if consumer.queue == queue:
                total += max(0, consumer.unsettled)
        return total

    async def _stats(self, queue: str) -> QueueStats:
        """Consumers from a passive declare (every process's); in flight is None: AMQP
        0-9-1 tells no one how many messages other channels hold unacknowledged (RabbitMQ's
        management API would; microhive does not depend on that plugin)."""
        length = await self._length(queue)
        found = await self.topology.figures(self.amqp_name(queue))
        dead = await self.topology.count(self.options.dead(queue))
        return QueueStats(queue, length, found[1] if found else 0, None, dead or 0)

    async def _dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        """Browse the dead-letter queue: take up to ``limit`` without acking, then close the
        channel so RabbitMQ puts them all back in their places."""
        await self.topology.queue(queue)
        declared = self.declaration(queue)
        link = self.link
        channel = await link.channel()
        letters: list[DeadLetter] = []
        try:
            for _ in range(max(0, limit)):
                message = await channel.basic_get(self.options.dead(queue), no_ack=False)
                if not isinstance(message.delivery, spec.Basic.GetOk):
                    break
                letters.append(wire.dead_letter(self.codec, declared, message))
        except Exception as exc:
            raise link.translate(exc) from exc
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), 5)
        return letters

    # -- dead-letter work and declarations --------------------------------------------------

    async def _requeue(self, queue: str, to: str, selection: Selection) -> int:
        """Publish each chosen dead letter to ``to`` (confirmed), *then* ack it off the
        dead-letter queue: a crash in between leaves it in both places, never in neither."""
        await self.topology.queue(to)

        async def move(letter: DeadLetter) -> None:
            header, body, message_id = self._requeued(letter, to)
            await self._deliver_to_queue(to, header, body, message_id)

        return await self._take_dead(queue, selection, move)

    async def _purge(self, queue: str, selection: Selection) -> int:
        return await self._take_dead(queue, selection, None)

    def _requeued(self, letter: DeadLetter, to: str) -> tuple[bytes, bytes, str]:
        """The properties, body and id a requeue publishes for ``letter``."""
        data = requeued(self.codec, letter, to)
        if letter.envelope is None:  # never decoded: its bytes as they are
            return wire.properties(delivery_mode=wire.PERSISTENT), data, new_id()
        envelope = self.codec.decode(data)
        form = self.declaration(to).payload
        if form != "json":
            return (
                wire.payload_properties(envelope, form),
                wire.payload_body(envelope, form),
                envelope.id,
            )
        return wire.message_properties(envelope, self._content_type), data, envelope.id

    async def _take_dead(
        self,
        queue: str,
        selection: Selection,
        move: Callable[[DeadLetter], Awaitable[None]] | None,
    ) -> int:
        """Go through the dead-letter queue with ``basic.get``: the chosen letters are moved
        (``move``) then acked, the others stay unacked until the channel closes, which puts
        them back in their places. Returns how many were taken."""
        await self.topology.queue(queue)
        declared = self.declaration(queue)
        link = self.link
        channel = await link.channel()
        taken = 0
        now = time.time()
        try:
            while selection.limit is None or taken < selection.limit:
                message = await channel.basic_get(self.options.dead(queue), no_ack=False)
                if not isinstance(message.delivery, spec.Basic.GetOk):
                    break
                letter = wire.dead_letter(self.codec, declared, message)
                if not selection.matches(letter, now):
                    continue
                if move is not None:
                    await move(letter)
                await channel.basic_ack(message.delivery.delivery_tag or 0)
                taken += 1
        except TransportError:
            raise
        except Exception as exc:
            raise link.translate(exc) from exc
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), 5)
        return taken

    async def _declare_queue(self, queue: Queue) -> None:
        """The queue, its dead-letter queue and exchange, and its exchanges and bindings, so
        a plain publisher can start before any consumer (delay queues come with the first
        retry: nobody but microhive publishes to them)."""
        self._declarations.setdefault(queue.name, queue)
        await self.topology.queue(queue.name)
        if queue.bindings:
            await self.topology.bind(queue)

    # -- consuming -------------------------------------------------------------------------

    async def _consume(self, queue: str, *, prefetch: int, name: str) -> Consumer:
        link = self.link
        deadline = asyncio.get_running_loop().time() + self.options.retry_timeout
        while True:
            try:
                await self.topology.queue(queue)
                consumer = AmqpConsumer(self, queue, self.amqp_name(queue), prefetch, name)
                await consumer.start()
                break
            except LinkDown:
                await link.ensure(deadline)
        self.consumers.add(consumer)
        link.register(consumer, consumer.resume)
        return consumer
