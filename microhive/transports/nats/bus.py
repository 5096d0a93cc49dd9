"""Signals and call replies on core NATS subjects.

One connection per bus. Each signal the bus listens to is one subscription on
``<prefix>.signal.<name>`` (subscriptions are cheap on NATS, and the server then sends only
what someone listens to); the bus's inbox ``<prefix>.reply.<id>`` is one more. A call is a
signal whose envelope names that inbox as ``reply_to``; responders publish their answer there.

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
from .connection import Connection, Handler, LinkError
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
        self._connection: Connection | None = None
        self._subscriptions: dict[str, Any] = {}  # signal name -> nats-py subscription
        self._subjects: dict[str, tuple[str, bytes]] = {}  # signal name -> subject, encoded

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.options.safe_url}>"

    def subject(self, signal: str) -> str:
        """The NATS subject of ``signal``: ``<prefix>.signal.<name>``."""
        return self._subject_prefix + signal

    # -- lifecycle -----------------------------------------------------------------------

    async def _connect(self) -> None:
        connection = Connection(self.options, "signal bus")
        await connection.open()
        try:
            await connection.subscribe(self.inbox, self._on_reply)
            await self._confirm(connection)
        except BaseException:
            await connection.close()
            raise
        connection.watch(down=self._lost, up=self._back)
        self._connection = connection

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        self._subscriptions.clear()
        if connection is not None:
            await connection.close()  # flushes: the signals sent so far reach the server

    async def _confirm(self, connection: Connection) -> None:
        """Return once the server has processed what was sent (SUB included): PING/PONG."""
        try:
            await connection.barrier()
        except Exception as exc:
            raise TransportError(connection.describe("no answer from", exc)) from None

    def _lost(self) -> None:
        log.warning(
            "signal bus %s: connection lost; signals published until it is back are not received",
            self.options.safe_url,
        )

    def _back(self) -> None:
        connection = self._connection
        lost_at = connection.lost_at if connection is not None else None
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
        connection = self._connection
        client = connection.client if connection is not None else None
        if client is not None and client.is_connected:  # the fast paths
            publish_now = getattr(client, "publish_now", None)
            if publish_now is not None and publish_now(encoded, data):
                return
            try:
                await client.publish(subject, data)
                return
            except Exception:  # the slow path below retries or explains what went wrong
                pass
        await self._send(subject, data)

    async def _send_direct(self, address: str, data: bytes) -> None:
        await self._send(address, data)

    async def _send(self, subject: str, data: bytes) -> None:
        connection = self._connection
        if connection is None:
            raise TransportError(f"{self!r} is not connected")
        try:
            await connection.require().publish(subject, data)
        except TransportError:
            raise
        except Exception as exc:
            if connection.closed or connection.up:
                raise LinkError(connection.describe("cannot publish to", exc)) from None
            # reconnecting with a full reconnect buffer: wait for the server, then send
            await connection.wait_up(connection.deadline(self.options.retry_timeout))
            await connection.publish(subject, data)

    # -- subscribing ---------------------------------------------------------------------

    async def _subscribe(self, channels: list[str]) -> None:
        connection = self._connection
        if connection is None:
            raise TransportError(f"{self!r} is not connected")
        for name in channels:
            if name in self._subscriptions:
                continue
            self._subscriptions[name] = await connection.subscribe(
                self.subject(name), self._receiver(name)
            )
        if connection.up:
            await self._confirm(connection)

    async def _unsubscribe(self, channels: list[str]) -> None:
        connection = self._connection
        for name in channels:
            subscription = self._subscriptions.pop(name, None)
            if subscription is not None and connection is not None:
                await connection.unsubscribe(subscription)

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
