"""Leases on RabbitMQ: an exclusive queue per lease, and a one-message queue for the last tick.

Why an exclusive queue: RabbitMQ ties it to the connection that declared it and deletes it
when that connection closes — at once when the process dies (the socket closes), within two
heartbeats (``ttl``) when the host or network does. Another connection that declares it
meanwhile gets ``RESOURCE_LOCKED``. So the lease needs no clock at all, and a holder can
never outlive its lease: both end with the connection. Single-active-consumer would also
name one holder, but it needs a consumer per replica and hides who holds it behind
deliveries; the exclusive queue answers "am I the holder" with one declare.

The last tick run is the one message of a durable queue ``...:tick`` (``x-max-length`` 1,
``drop-head``): a new holder reads it (``basic.get``, then returns it) when it takes the
lease; the holder publishes each tick it claims, with a publisher confirm, before it runs
it. Only the holder reads or writes it, and the next holder exists only once the previous
one's connection is gone, so it sees every tick its predecessor ran.

Each lease has its own connection, opened at the first operation and again after a loss.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiormq
import aiormq.exceptions as amqp_errors
from pamqp.commands import Basic

from ...leases import Lease
from .options import AmqpOptions


class AmqpLease(Lease):
    def __init__(self, options: AmqpOptions, name: str, holder: str, ttl: float) -> None:
        super().__init__(name, holder, ttl)
        self.options = options
        self.queue = options.queue(f"microhive:lease:{name}")
        self.tick_queue = f"{self.queue}:tick"
        self._url = _with_heartbeat(options.connection_url, ttl)
        self._connection: aiormq.abc.AbstractConnection | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None  # open while held
        self._last: int | None = None  # the last tick run, read when the lease was taken

    async def _connect(self) -> aiormq.abc.AbstractConnection:
        connection = self._connection
        if connection is None or connection.is_closed:
            self._channel = None
            connection = aiormq.Connection(
                self._url, client_properties={"connection_name": f"microhive lease {self.name}"}
            )
            await connection.connect()
            self._connection = connection
        return connection

    @property
    def _held(self) -> bool:
        channel, connection = self._channel, self._connection
        return (
            channel is not None
            and not channel.is_closed
            and connection is not None
            and not connection.is_closed
        )

    async def acquire(self) -> bool:
        if self._held:
            return await self.renew()
        connection = await self._connect()
        channel = await connection.channel()  # RESOURCE_LOCKED closes it: one per attempt
        try:
            await channel.queue_declare(self.queue, exclusive=True)
        except amqp_errors.ChannelLockedResource:
            return False
        try:
            await channel.queue_declare(
                self.tick_queue,
                durable=True,
                arguments={"x-max-length": 1, "x-overflow": "drop-head"},
            )
            got = await channel.basic_get(self.tick_queue, no_ack=False)
            delivery = got.delivery
            if isinstance(delivery, Basic.GetOk) and delivery.delivery_tag is not None:
                self._last = int(got.body)
                await channel.basic_reject(delivery.delivery_tag, requeue=True)
            else:
                self._last = None
        except BaseException:
            await connection.close()  # the exclusive queue goes with it
            raise
        self._channel = channel
        return True

    async def renew(self) -> bool:
        channel = self._channel
        if not self._held or channel is None:
            return False
        try:  # our own exclusive queue is there as long as our connection is
            await channel.queue_declare(self.queue, passive=True)
        except (amqp_errors.AMQPError, ConnectionError):
            self._channel = None
            return False
        return True

    async def release(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            await channel.queue_delete(self.queue)
            await channel.close()

    async def claim(self, tick: int) -> bool:
        channel = self._channel
        if not self._held or channel is None:
            return False
        if self._last is not None and tick <= self._last:
            return False
        confirmation = await channel.basic_publish(
            str(tick).encode(),
            routing_key=self.tick_queue,
            properties=Basic.Properties(delivery_mode=2),
        )
        if not isinstance(confirmation, Basic.Ack):
            raise aiormq.exceptions.PublishError(confirmation, None)  # type: ignore[arg-type]
        self._last = tick
        return True

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            await connection.close()


def _with_heartbeat(url: str, ttl: float) -> str:
    """The connection URL with a heartbeat of ``ttl / 2``: RabbitMQ closes a connection that
    missed two heartbeats, so a lost holder's lease ends about ``ttl`` after its last sign."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["heartbeat"] = str(max(1, round(ttl / 2)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def open_lease(transport: Any, name: str, holder: str, ttl: float) -> Lease:
    return AmqpLease(transport.options, name, holder, ttl)
