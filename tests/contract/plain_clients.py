"""Publishing to a microhive queue with each engine's own client, as a foreign producer does.

Nothing here goes through microhive's brokers: the bytes (and the engine's framing around
them: Redis stream fields, NATS and Kafka headers, AMQP properties) reach the engine exactly
as given, so tests can put there what microhive itself would never send.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from microhive.transports.memory.hive import hive_for


@dataclass(frozen=True)
class Raw:
    """One message as a foreign producer sends it."""

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    """NATS headers and Kafka record headers (text), the AMQP headers table (any type)."""
    fields: tuple[tuple[bytes, bytes], ...] | None = None
    """Redis: the stream entry's fields instead of ``data`` = body."""
    timestamp: datetime | None = None
    """AMQP: the ``timestamp`` property (see :class:`Moment` for any 64-bit value)."""
    message_id: str | None = None
    """AMQP: the ``message_id`` property (see :class:`NotUtf8` for any bytes)."""
    header_block: bytes | None = None
    """NATS: the header block exactly as given (``NATS/1.0...``), sent as a raw ``HPUB``."""


class Moment(datetime):
    """An AMQP timestamp of any 64-bit value: pamqp writes ``int(value.timestamp())``."""

    seconds = 0

    @classmethod
    def at(cls, seconds: int) -> Moment:
        moment = cls(2000, 1, 1, tzinfo=UTC)
        moment.seconds = seconds
        return moment

    def timestamp(self) -> float:
        return self.seconds  # type: ignore[return-value]


class NotUtf8(str):
    """A short string that pamqp writes as the given bytes, UTF-8 or not."""

    raw = b""

    @classmethod
    def of(cls, raw: bytes) -> NotUtf8:
        text = cls(raw.decode("latin-1"))
        text.raw = raw
        return text

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def _without_query(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(query=""))


async def publish(engine: str, url: str, queue: str, messages: list[Raw]) -> None:
    """Put ``messages`` in ``queue`` (declared by a running consumer), in this order."""
    await _PUBLISHERS[engine](url, queue, messages)


async def _memory(url: str, queue: str, messages: list[Raw]) -> None:
    target = hive_for(url).queue(queue)
    for message in messages:
        target.history.record(message.body)
        target.put(message.body)


async def _redis(url: str, queue: str, messages: list[Raw]) -> None:
    import redis.asyncio as aioredis

    from microhive.transports.redis.options import DEFAULTS

    query = _query(url)
    parts = urlsplit(url)
    plain = [(k, v) for k, v in parse_qsl(parts.query) if k not in DEFAULTS]
    client = aioredis.Redis.from_url(urlunsplit(parts._replace(query=urlencode(plain))))
    stream = f"{query.get('prefix', 'microhive:')}queue:{queue}"
    try:
        async with client.pipeline(transaction=False) as pipe:
            for message in messages:
                entry = dict(message.fields) if message.fields is not None else None
                pipe.xadd(stream, entry or {b"data": message.body})
            await pipe.execute()
    finally:
        await client.aclose()


async def _amqp(url: str, queue: str, messages: list[Raw]) -> None:
    import aiormq
    from pamqp.commands import Basic

    connection = await aiormq.connect(_without_query(url))
    try:
        channel = await connection.channel()  # publisher confirms on
        name = f"{_query(url).get('prefix', '')}{queue}"
        confirms = []
        for message in messages:
            properties = Basic.Properties(
                delivery_mode=2,
                headers=dict(message.headers) or None,
                timestamp=message.timestamp,
                message_id=message.message_id,
            )
            confirms.append(
                channel.basic_publish(message.body, routing_key=name, properties=properties)
            )
        await asyncio.gather(*confirms)
    finally:
        await connection.close()


async def _nats(url: str, queue: str, messages: list[Raw]) -> None:
    import nats

    from microhive.transports.nats.options import parse

    options = parse(url)
    client = await nats.connect(list(options.servers), allow_reconnect=False)
    try:
        js = client.jetstream()
        subject = options.queue_subject(queue)
        for message in messages:
            if message.header_block is not None:
                await _hpub(options.servers[0], subject, message.header_block, message.body)
            else:
                await js.publish(subject, message.body, headers=dict(message.headers) or None)
    finally:
        await client.close()


async def _hpub(server: str, subject: str, block: bytes, body: bytes) -> None:
    """Publish with a header block nats-py would not write, over a plain socket; returns
    once the server answered the PING after it (so it has the message)."""
    host, port = urlsplit(server).hostname, urlsplit(server).port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await reader.readline()  # INFO
        size = len(block)
        writer.write(
            b'CONNECT {"headers": true, "verbose": false}\r\n'
            + b"HPUB %s %d %d\r\n%s%s\r\nPING\r\n"
            % (subject.encode(), size, size + len(body), block, body)
        )
        while not (await reader.readline()).startswith(b"PONG"):
            pass
    finally:
        writer.close()


async def _kafka(url: str, queue: str, messages: list[Raw]) -> None:
    from aiokafka import AIOKafkaProducer

    from microhive.transports.kafka.options import parse

    options = parse(url)
    producer = AIOKafkaProducer(bootstrap_servers=options.bootstrap)
    await producer.start()
    try:
        topic = options.topic(queue)
        sent = []
        for message in messages:
            headers = [(k, v.encode()) for k, v in message.headers.items()]
            value: bytes | None = message.body
            key = None
            if message.headers.get(TOMBSTONE) is not None:  # a null value needs a key
                value, key, headers = None, b"tombstone", []
            sent.append(await producer.send(topic, value, key=key, headers=headers or None))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


TOMBSTONE = "x-test-tombstone"
"""Kafka: a record with this header is sent without it and with no value at all (null)."""

_PUBLISHERS: dict[str, Any] = {
    "memory": _memory,
    "redis": _redis,
    "amqp": _amqp,
    "nats": _nats,
    "kafka": _kafka,
}
