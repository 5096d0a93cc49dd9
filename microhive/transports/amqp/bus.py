"""Signals and calls on RabbitMQ: a topic exchange, and one exclusive queue per bus.

Signals are published (transient, no confirm: at most once, the fast path) to the topic
exchange ``microhive:signals`` with the signal's name as routing key. Each bus declares an
exclusive, auto-deleted queue ``microhive:bus:<id>`` bound to the names its agents receive;
the same queue is the bus's reply address: a reply is published to the default exchange with
the caller's queue name as routing key, and matched by correlation id. After a reconnect the
queue is declared again with the same name and every binding is restored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiormq.abc import AbstractChannel, DeliveredMessage

from ...bus import SignalBus
from ...capabilities import Capabilities
from ...envelope import new_id
from ..links import LinkDown
from . import wire
from .link import Link, acquire, release
from .options import AmqpOptions, parse

log = logging.getLogger("microhive.amqp")

BACKLOG = 1000
"""Signals queued but not yet written above which ``send()`` waits for the connection."""


class AmqpBus(SignalBus):
    """``amqp://user:password@host:port/vhost?prefix=...``: signals through RabbitMQ."""

    capabilities = Capabilities(out_of_process=True, durable=False)

    def __init__(self, url: str = "amqp://guest:guest@127.0.0.1:5672/", **options: Any) -> None:
        super().__init__(url, **options)
        self.options: AmqpOptions = parse(url)
        self.inbox = self.options.bus_queue(new_id())
        self._link: Link | None = None
        self._channel: AbstractChannel | None = None
        self._generation = -1
        self._setting_up = asyncio.Lock()
        self._recovering: asyncio.Task[None] | None = None
        self._header = wire.properties(
            content_type=self.codec.content_type, delivery_mode=wire.TRANSIENT
        )

    @property
    def link(self) -> Link:
        if self._link is None:
            raise LinkDown(f"{self!r} is not connected")
        return self._link

    async def _connect(self) -> None:
        link = await acquire(self.options)
        self._link = link
        try:
            await self._setup()
        except BaseException:
            self._link = None
            await release(link)
            raise
        link.register(self, self._resume)

    async def _setup(self) -> None:
        """Declare the bus queue, bind every listened name, consume; once per connection
        (a subscribe and the link's resume after a reconnect may both ask)."""
        async with self._setting_up:
            current = self._channel
            if (
                current is not None
                and not current.is_closed
                and self._generation == self.link.generation
            ):
                return
            await self._setup_now()

    async def _setup_now(self) -> None:
        link = self.link
        generation = link.generation
        channel = await link.channel()
        try:
            await channel.exchange_declare(
                self.options.signals_exchange, exchange_type="topic", durable=True
            )
            await channel.queue_declare(self.inbox, exclusive=True, auto_delete=True)
            for name in list(self._listeners):
                await channel.queue_bind(
                    self.inbox, self.options.signals_exchange, routing_key=name
                )
            await channel.basic_consume(
                self.inbox, self._on_message, no_ack=True, consumer_tag=self.inbox
            )
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await channel.close()
            if isinstance(exc, Exception):
                raise link.translate(exc) from exc
            raise
        self._channel = channel
        self._generation = generation
        channel.closing.add_done_callback(lambda _: self._lost(channel))

    def _lost(self, channel: AbstractChannel) -> None:
        """The bus channel closed while the connection is up (a channel error): set up
        again, in a task; a lost connection is the link's to resume."""
        link = self._link
        if not (self._connected and channel is self._channel and link is not None and link.up):
            return
        if self._recovering is None or self._recovering.done():
            self._recovering = asyncio.get_running_loop().create_task(
                self._recover(channel), name=f"amqp-recover {self!r}"
            )

    async def _recover(self, channel: AbstractChannel) -> None:
        link = self._link
        if link is None:
            return
        generation = link.generation
        delay = 0.1
        while self._connected and channel is self._channel and link.up:
            await asyncio.sleep(delay)
            if link.generation != generation or channel is not self._channel or not link.up:
                return  # reconnected meanwhile: the link set the bus up again
            try:
                await self._setup()
                log.warning("%r set up its queue again after a channel error", self)
                return
            except Exception as exc:
                log.error("%r could not set up its queue again: %s", self, exc)
                delay = min(delay * 2, 5.0)

    async def _resume(self, generation: int) -> None:
        if self._connected:
            await self._setup()

    async def _close(self) -> None:
        link, channel = self._link, self._channel
        self._channel = None  # (so that closing it is not taken for a failure)
        recovering, self._recovering = self._recovering, None
        if recovering is not None:  # no task of the bus outlives close()
            recovering.cancel()
            await asyncio.gather(recovering, return_exceptions=True)
        if link is None:
            return
        link.unregister(self)
        fire = link.ready_fire()
        if fire is not None:  # signals and replies sent go out before we leave
            with contextlib.suppress(Exception):
                await asyncio.wait_for(fire.drain(), 5)
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.basic_cancel(self.inbox), 5)
                await asyncio.wait_for(channel.queue_delete(self.inbox), 5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), 5)
        self._link = None
        await release(link)

    async def _on_message(self, message: DeliveredMessage) -> None:
        delivery: Any = message.delivery
        if delivery.exchange == "":
            self._deliver_reply(message.body)
        else:
            self._deliver(delivery.routing_key, message.body)

    async def _send(self, exchange: str, routing_key: str, data: bytes) -> None:
        link = self.link
        deadline = asyncio.get_running_loop().time() + self.options.retry_timeout
        while True:
            try:
                pipeline = link.ready_fire() or await link.fire(deadline)
                pipeline.publish(exchange, routing_key, self._header, data)
                if pipeline.backlog > BACKLOG:  # a sender faster than the socket waits for it
                    await pipeline.drain()
                return
            except LinkDown:
                await link.ensure(deadline)

    async def _publish(self, channel: str, data: bytes) -> None:
        await self._send(self.options.signals_exchange, channel, data)

    async def _send_direct(self, address: str, data: bytes) -> None:
        await self._send("", address, data)

    async def _bus_channel(self) -> AbstractChannel:
        channel = self._channel
        if channel is None or channel.is_closed:
            await self.link.ensure()
            channel = self._channel
            if channel is None or channel.is_closed:
                await self._setup()
                channel = self._channel
        assert channel is not None
        return channel

    async def _subscribe(self, channels: list[str]) -> None:
        channel = await self._bus_channel()
        try:
            for name in channels:
                await channel.queue_bind(
                    self.inbox, self.options.signals_exchange, routing_key=name
                )
        except Exception as exc:
            raise self.link.translate(exc) from exc

    async def _unsubscribe(self, channels: list[str]) -> None:
        channel = self._channel
        if channel is None or channel.is_closed:
            return  # bindings are restored from the listeners after a reconnect
        try:
            for name in channels:
                await channel.queue_unbind(
                    self.inbox, self.options.signals_exchange, routing_key=name
                )
        except Exception as exc:
            log.warning("could not unbind %s from %s: %s", channels, self.inbox, exc)
