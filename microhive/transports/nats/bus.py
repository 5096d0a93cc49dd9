"""Signals and call replies on core NATS subjects.

One connection (:class:`~.link.Link`) per bus. Each signal the bus listens to is one
subscription on ``<prefix>.signal.<name>`` (subscriptions are cheap on NATS, and the server
then sends only what someone listens to); the bus's inbox ``<prefix>.reply.<id>`` is one
more. A call is a signal whose envelope names that inbox as ``reply_to``; responders publish
their answer there.

Signals are at most once: a bus that is disconnected misses what is published meanwhile.
nats-py reconnects and subscribes again by itself; the bus logs the window in which signals
were lost.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ...bus import SignalBus
from ...capabilities import Capabilities
from ...errors import TransportError
from ..links import LinkDown
from .internals import Handler
from .link import Link
from .options import NatsOptions, parse

log = logging.getLogger("microhive.nats")


class NatsBus(SignalBus):
    """``nats://[user:password@]host[:port][,host:port...][?prefix=...]`` (``tls://`` for TLS)."""

    capabilities = Capabilities(out_of_process=True, durable=False)

    def __init__(self, url: str = "nats://", *, prefix: str | None = None, **options: Any) -> None:
        self.options: NatsOptions = parse(url)
        base = self.options.prefix if prefix is None else prefix.rstrip(".")
        super().__init__(url, prefix=f"{base}.", **options)
        self._subject_prefix = f"{base}.signal."
        self._link: Link | None = None
        self._subscriptions: dict[str, Any] = {}  # signal name -> nats-py subscription
        self._subjects: dict[str, tuple[str, bytes]] = {}  # signal name -> subject, encoded

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.options.safe_url}>"

    def subject(self, signal: str) -> str:
        """The NATS subject of ``signal``: ``<prefix>.signal.<name>``."""
        return self._subject_prefix + signal

    # -- lifecycle -----------------------------------------------------------------------

    async def _connect(self) -> None:
        link = Link(self.options, "signal bus")
        await link.open()
        try:
            await link.subscribe(self.inbox, self._on_reply)
            await self._confirm(link)
        except BaseException:
            await link.close()
            raise
        link.watch(down=self._lost, up=self._back)
        self._link = link

    async def _close(self) -> None:
        link, self._link = self._link, None
        self._subscriptions.clear()
        if link is not None:
            await link.close()  # flushes: the signals sent so far reach the server

    async def _confirm(self, link: Link) -> None:
        """Return once the server has processed what was sent (SUB included): PING/PONG."""
        try:
            await link.barrier()
        except Exception as exc:
            raise LinkDown(link.describe("no answer from", exc)) from None

    def _lost(self) -> None:
        log.warning(
            "signal bus %s: connection lost; signals published until it is back are not received",
            self.options.safe_url,
        )

    def _back(self) -> None:
        link = self._link
        lost_at = link.lost_at if link is not None else None
        now = time.time()
        log.warning(
            "signal bus %s: subscribed again after %.2f s; signals published between %s and "
            "%s were lost",
            self.options.safe_url,
            now - lost_at if lost_at else 0.0,
            _clock(lost_at or now),
            _clock(now),
        )

    # -- publishing ----------------------------------------------------------------------

    async def _publish(self, channel: str, data: bytes) -> None:
        known = self._subjects.get(channel)
        if known is None:
            name = self._subject_prefix + channel
            known = self._subjects[channel] = (name, name.encode())
        subject, encoded = known
        link = self._link
        if link is not None:  # the fast paths
            fast = link.fast_publish
            if fast is not None and fast(encoded, data):
                return
            client = link.client
            if client is not None and client.is_connected:
                try:
                    await client.publish(subject, data)
                    return
                except Exception:  # the slow path below retries or explains what went wrong
                    pass
        await self._send(subject, data)

    async def _send_direct(self, address: str, data: bytes) -> None:
        await self._send(address, data)

    async def _send(self, subject: str, data: bytes) -> None:
        link = self._link
        if link is None:
            raise TransportError(f"{self!r} is not connected")
        try:
            await link.require().publish(subject, data)
        except TransportError:
            raise
        except Exception as exc:
            if link.closed or link.up:
                raise LinkDown(link.describe("cannot publish to", exc)) from None
            # reconnecting with a full reconnect buffer: wait for the server, then send
            await link.wait_up(link.deadline(self.options.retry_timeout))
            await link.publish(subject, data)

    # -- subscribing ---------------------------------------------------------------------

    async def _subscribe(self, channels: list[str]) -> None:
        link = self._link
        if link is None:
            raise TransportError(f"{self!r} is not connected")
        for name in channels:
            if name in self._subscriptions:
                continue
            self._subscriptions[name] = await link.subscribe(
                self.subject(name), self._receiver(name)
            )
        if link.up:
            await self._confirm(link)

    async def _unsubscribe(self, channels: list[str]) -> None:
        link = self._link
        for name in channels:
            subscription = self._subscriptions.pop(name, None)
            if subscription is not None and link is not None:
                await link.unsubscribe(subscription)

    def _receiver(self, name: str) -> Handler:
        deliver = self._deliver

        def receive(
            subject: bytes, reply: bytes, data: bytes, headers: dict[str, str] | None
        ) -> None:
            deliver(name, data)

        return receive

    def _on_reply(
        self, subject: bytes, reply: bytes, data: bytes, headers: dict[str, str] | None
    ) -> None:
        self._deliver_reply(data)


def _clock(timestamp: float) -> str:
    milliseconds = int(timestamp % 1 * 1000)
    return time.strftime("%H:%M:%S", time.localtime(timestamp)) + f".{milliseconds:03d}"
