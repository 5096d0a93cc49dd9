"""Signals and call replies over Redis PUBLISH/SUBSCRIBE.

One bus holds two connections, whatever the number of signals: a command connection that
PUBLISHes (pipelined, without waiting for the receiver counts) and one subscriber
connection for every signal channel of the bus plus its own reply channel (its inbox), read
by one task. Replies are published to the caller's inbox channel, which only that bus
subscribes to.

Signals are at most once: a subscriber that is disconnected misses what is published
meanwhile; the bus reconnects by itself, subscribes again and logs how long it was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from ...bus import SignalBus
from ...capabilities import Capabilities
from ...errors import TransportError
from ..links import RECONNECT, LinkDown
from .link import WRITE_HIGH_WATER, Link
from .options import RedisOptions, parse

log = logging.getLogger("microhive.redis")

_MESSAGE = b"message"


class RedisBus(SignalBus):
    """``redis://[user:password@]host[:port][/db][?prefix=...]`` (``rediss://`` for TLS;
    ``redis+unix://`` and ``redis+sentinel://`` too, see docs/transports/redis.md)."""

    capabilities = Capabilities(out_of_process=True, durable=False)

    def __init__(self, url: str = "redis://", *, prefix: str | None = None, **options: Any) -> None:
        self.options: RedisOptions = parse(url)
        super().__init__(url, prefix=self.options.prefix if prefix is None else prefix, **options)
        self._channel_prefix = f"{self.prefix}signal:"
        self._commands: Link | None = None
        self._listener: Link | None = None
        self._channels: dict[bytes, str] = {}  # subscribed channel -> signal name
        self._inbox = self.inbox.encode()
        self._confirming: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._watcher: asyncio.Task[None] | None = None

    def channel(self, signal: str) -> str:
        """The Redis channel of ``signal``: ``<prefix>signal:<name>``."""
        return self._channel_prefix + signal

    # -- lifecycle -----------------------------------------------------------------------

    async def _connect(self) -> None:
        commands = Link(self.options, "bus")
        listener = Link(self.options, "bus subscriber", on_push=self._on_push)
        deadline = asyncio.get_running_loop().time() + self.options.connect_timeout
        try:
            await commands.ensure(deadline)
            await listener.ensure(deadline)
            await self._subscribe_all(listener, [self._inbox])
        except BaseException:
            await commands.close()
            await listener.close()
            raise
        self._commands, self._listener = commands, listener
        self._watcher = asyncio.get_running_loop().create_task(
            self._watch(listener), name="microhive.redis.bus.watcher"
        )

    async def _close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        for link in (self._listener, self._commands):
            if link is not None:
                await link.settle(self.options.command_timeout)  # signals sent reach Redis
                await link.close()
        self._commands = self._listener = None
        self._channels.clear()
        for waiters in self._confirming.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        self._confirming.clear()

    async def _watch(self, listener: Link) -> None:
        """Reconnect the subscriber connection whenever it drops, and subscribe again."""
        while True:
            await listener.wait_down()
            lost_at = time.time()
            started = asyncio.get_running_loop().time()
            log.warning(
                "signal bus %s: subscriber connection lost; signals published until it is "
                "back are not received",
                self.options.safe_url,
            )
            attempt = 0
            while True:
                try:
                    await listener.ensure()
                    await self._subscribe_all(listener, [self._inbox, *self._channels])
                    break
                except Exception as exc:  # never end the loop
                    attempt += 1
                    log.error("signal bus: reconnecting failed: %s", exc)
                    await asyncio.sleep(RECONNECT.delay(attempt))
            away = asyncio.get_running_loop().time() - started
            log.warning(
                "signal bus %s: subscribed again after %.2f s; signals published between %s "
                "and %s were lost",
                self.options.safe_url,
                away,
                _clock(lost_at),
                _clock(time.time()),
            )

    # -- publishing ----------------------------------------------------------------------

    async def _publish(self, channel: str, data: bytes) -> None:
        await self._send(self._channel_prefix + channel, data)

    async def _send_direct(self, address: str, data: bytes) -> None:
        await self._send(address, data)

    async def _send(self, channel: str, data: bytes) -> None:
        link = self._commands
        if link is None:
            raise TransportError(f"{self!r} is not connected")
        if not link.up:
            await link.ensure(asyncio.get_running_loop().time() + self.options.retry_timeout)
        link.send_nowait(b"PUBLISH", channel, data)
        if link.backlog() > WRITE_HIGH_WATER:
            await link.drain()

    # -- subscribing ---------------------------------------------------------------------

    async def _subscribe(self, channels: list[str]) -> None:
        names = {self.channel(name).encode(): name for name in channels}
        self._channels.update(names)
        listener = self._listener
        if listener is None:
            raise TransportError(f"{self!r} is not connected")
        if listener.up:
            try:
                await self._subscribe_all(listener, list(names))
                return
            except LinkDown:
                pass  # the watcher subscribes every channel again once reconnected
        await self._wait_confirmed(list(names))

    async def _unsubscribe(self, channels: list[str]) -> None:
        gone = [self.channel(name).encode() for name in channels]
        for channel in gone:
            self._channels.pop(channel, None)
        listener = self._listener
        if listener is not None and listener.up:
            with contextlib.suppress(LinkDown):
                listener.send_nowait(b"UNSUBSCRIBE", *gone)

    async def _subscribe_all(self, listener: Link, channels: list[bytes]) -> None:
        if not channels:
            return
        waiters = self._expect(channels)
        listener.send_nowait(b"SUBSCRIBE", *channels)
        try:
            async with asyncio.timeout(self.options.command_timeout):
                await asyncio.gather(*waiters)
        except TimeoutError:
            raise LinkDown(
                f"signal bus {self.options.safe_url}: SUBSCRIBE not confirmed within "
                f"{self.options.command_timeout:g} s"
            ) from None

    def _expect(self, channels: list[bytes]) -> list[asyncio.Future[None]]:
        loop = asyncio.get_running_loop()
        waiters = []
        for channel in channels:
            waiter: asyncio.Future[None] = loop.create_future()
            self._confirming.setdefault(channel, deque()).append(waiter)
            waiters.append(waiter)
        return waiters

    async def _wait_confirmed(self, channels: list[bytes]) -> None:
        """Wait (up to ``retry_timeout``) for the watcher to subscribe ``channels`` again."""
        waiters = self._expect(channels)
        try:
            async with asyncio.timeout(self.options.retry_timeout):
                await asyncio.gather(*waiters)
        except TimeoutError:
            raise TransportError(
                f"{self!r}: could not subscribe within {self.options.retry_timeout:g} s"
            ) from None

    def _on_push(self, reply: Any) -> None:
        """Everything the subscriber connection receives."""
        if type(reply) is not list or len(reply) < 3:
            return  # PONG
        kind = reply[0]
        if kind == _MESSAGE:
            channel = reply[1]
            if channel == self._inbox:
                self._deliver_reply(reply[2])
            else:
                name = self._channels.get(channel)
                if name is not None:
                    self._deliver(name, reply[2])
        elif kind == b"subscribe":
            waiters = self._confirming.get(reply[1])
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
            if waiters is not None and not waiters:
                self._confirming.pop(reply[1], None)


def _clock(timestamp: float) -> str:
    milliseconds = int(timestamp % 1 * 1000)
    return time.strftime("%H:%M:%S", time.localtime(timestamp)) + f".{milliseconds:03d}"
