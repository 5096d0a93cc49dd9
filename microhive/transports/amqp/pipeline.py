"""The per-message hot paths, which reach into aiormq's private parts: publishing through a
confirm window, and taking deliveries from a channel's frame reader.

Everything microhive borrows from aiormq below its public API is used in this module and
nowhere else, and listed in :data:`BORROWED` (why each is needed: docs/transports/amqp.md,
"aiormq internals"). tests/canary/test_amqp_internals.py checks each of them against the
installed aiormq, so an upgrade that moves one fails there, by name, not in production.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import aiormq
from aiormq.abc import ChannelFrame, DeliveredMessage
from pamqp import commands as spec

from ...errors import TransportError
from ..links import LinkDown
from . import wire

BORROWED = (
    "Channel.delivery_tag",  # the last publish sequence number: we number our publishes
    "Channel.confirmations",  # tag -> future that aiormq resolves on basic.ack / nack
    "Channel.message_id_delivery_tag",  # message id -> tag: how a basic.return finds its future
    "Channel.write_queue",  # the connection's writer queue: our frames go in as ChannelFrame
    "Channel._on_deliver_frame",  # replaced: deliveries without a task per message
    "Channel._Channel__get_content_header",  # read by our deliver-frame reader
    "Channel._read_content",  # read by our deliver-frame reader
    "ChannelFrame(payload, should_close)",  # what write_queue carries
)

_CHANNEL_PARTS = ("delivery_tag", "confirmations", "message_id_delivery_tag", "write_queue")


class Pipeline:
    """Frames of one channel, coalesced into few writes; with confirms, a confirm window.

    ``window`` > 0 turns on publisher confirms: :meth:`publish` returns a future that aiormq
    resolves with the broker's ack, fails with ``PublishError`` when a mandatory message is
    returned and ``DeliveryError`` when it is nacked, and fails when the channel closes.
    Callers wait in :meth:`room` while ``window`` publishes are unconfirmed. ``generation``
    is the link's connection generation the channel belongs to.
    """

    def __init__(
        self, channel: aiormq.abc.AbstractChannel, window: int, generation: int = 0
    ) -> None:
        self.channel: Any = channel  # aiormq.Channel: its confirm bookkeeping is used directly
        missing = [name for name in _CHANNEL_PARTS if not hasattr(channel, name)]
        if missing:
            raise TransportError(
                f"this aiormq version's channels lack {missing}: install aiormq>=7.2.4,<7.3"
            )
        self.number: int = channel.number
        self.window = window
        self.generation = generation
        self.frame_max: int = channel.connection.connection_tune.frame_max or 131072
        self.in_flight = 0
        self._out: list[bytes] = []
        self._wake = asyncio.Event()
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._methods: dict[tuple[str, str, bool], bytes] = {}
        self._stopped = False
        self._busy = False
        self._drained: deque[asyncio.Future[None]] = deque()
        self._deadlines: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._expiry: asyncio.TimerHandle | None = None
        self._task = asyncio.get_running_loop().create_task(
            self._write(), name=f"amqp-pipeline {self.number}"
        )

    @property
    def open(self) -> bool:
        return not self._stopped and not self.channel.is_closed

    def stop(self) -> None:
        """Stop writing (what is queued is dropped) and release every waiter."""
        self._stopped = True
        self._task.cancel()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._deadlines.clear()
        self._out.clear()
        self._wake_drained()
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def close(self) -> None:
        """:meth:`stop`, and wait until the writer task has ended."""
        self.stop()
        await asyncio.gather(self._task, return_exceptions=True)

    async def room(self) -> None:
        """Wait while the confirm window is full."""
        while self.window and self.in_flight >= self.window and self.open:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()

    @property
    def backlog(self) -> int:
        """Messages queued here and not yet handed to the connection's writer."""
        return len(self._out)

    def send(self, data: bytes) -> None:
        """Queue raw frames (acks, nacks); they go out with the next write."""
        if not self.open:
            raise LinkDown("channel closed")
        self._out.append(data)
        self._wake.set()

    def publish(
        self,
        exchange: str,
        routing_key: str,
        header: bytes,
        body: bytes,
        *,
        mandatory: bool = False,
        message_id: str | None = None,
        deadline: float | None = None,
    ) -> asyncio.Future[Any] | None:
        """Queue one message; with confirms, the future of its confirm, cancelled if it is
        still unconfirmed at ``deadline`` (loop time)."""
        if not self.open:
            raise LinkDown("channel closed")
        key = (exchange, routing_key, mandatory)
        method = self._methods.get(key)
        if method is None:
            if len(self._methods) > 4096:
                self._methods.clear()
            method = self._methods[key] = wire.publish_method(
                self.number, exchange, routing_key, mandatory
            )
        confirm: asyncio.Future[Any] | None = None
        if self.window:
            channel = self.channel
            tag = channel.delivery_tag = channel.delivery_tag + 1
            confirm = channel.create_future()
            channel.confirmations[tag] = confirm
            self.in_flight += 1
            if mandatory and message_id:
                returns = channel.message_id_delivery_tag
                returns[message_id] = tag

                def forget(_: object, message_id: str = message_id, tag: int = tag) -> None:
                    if returns.get(message_id) == tag:
                        del returns[message_id]
                    self._confirmed()

                confirm.add_done_callback(forget)
            else:
                confirm.add_done_callback(self._confirmed)
            if deadline is not None:
                self._expire_at(confirm, deadline)
        self._out.append(method + wire.content_frames(self.number, header, body, self.frame_max))
        self._wake.set()
        return confirm

    def _expire_at(self, confirm: asyncio.Future[Any], deadline: float) -> None:
        """One timer for every unconfirmed publish, not one per publish: confirms arrive in
        publish order, so the earliest deadline is (about) the oldest publish's."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][1].done():
            deadlines.popleft()
        deadlines.append((deadline, confirm))
        if self._expiry is None:
            self._expiry = asyncio.get_running_loop().call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        deadlines, now = self._deadlines, asyncio.get_running_loop().time()
        while deadlines and (deadlines[0][1].done() or deadlines[0][0] <= now):
            _, confirm = deadlines.popleft()
            confirm.cancel()  # a no-op when it is done
        if deadlines:
            self._expiry = asyncio.get_running_loop().call_at(deadlines[0][0], self._expire)

    def _confirmed(self, _: object = None) -> None:
        self.in_flight -= 1
        if self._waiting and self.in_flight < self.window:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self) -> None:
        """Wait until every queued frame was handed to the connection's writer (frames sent
        later on this connection, such as an RPC, go after them)."""
        while (self._out or self._busy) and self.open:
            waiter = asyncio.get_running_loop().create_future()
            self._drained.append(waiter)
            await waiter

    async def _write(self) -> None:
        write_queue = self.channel.write_queue
        out = self._out
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                self._busy = True
                try:
                    while out:
                        payload = b"".join(out)
                        out.clear()
                        await write_queue.put(ChannelFrame(payload=payload, should_close=False))
                finally:
                    self._busy = False
                    self._wake_drained()
        except asyncio.CancelledError:
            pass

    def _wake_drained(self) -> None:
        while self._drained:
            waiter = self._drained.popleft()
            if not waiter.done():
                waiter.set_result(None)


def take_directly(
    channel: aiormq.abc.AbstractChannel, take: Callable[[DeliveredMessage], None]
) -> bool:
    """Have ``channel``'s frame reader hand each delivery to ``take`` itself, without the task
    aiormq starts per message (a good part of the cost of a delivery). False, and nothing
    changed, where this aiormq lacks the two methods it needs: the consumer callback is then
    used."""
    read_header = getattr(channel, "_Channel__get_content_header", None)
    read_content = getattr(channel, "_read_content", None)
    if read_header is None or read_content is None:
        return False

    async def on_deliver_frame(frame: spec.Basic.Deliver) -> None:
        header = await read_header()
        take(await read_content(frame, header))

    channel._on_deliver_frame = on_deliver_frame  # type: ignore[attr-defined]
    return True
