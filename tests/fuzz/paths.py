"""The decode path a consumer runs on what arrives from outside, one function per layer.

Each function takes fuzz input and raises only for a bug: what comes out of a path may be
nothing but the typed errors microhive documents for bad input (``DecodeError`` from a
codec; pydantic's ``ValidationError`` and ``TypeError`` from fitting a payload to a
handler). Anything else would reach a transport's read loop or a consumer worker, where
it drops a batch, kills a connection or stalls a queue instead of dead-lettering.

Framing is read from the fuzz bytes by :class:`Source`, so one byte string drives any
path (atheris and hypothesis feed the same functions, see tests/fuzz/decode.py).
"""

from __future__ import annotations

import asyncio
import struct
from types import SimpleNamespace
from typing import Any

from pamqp import frame as amqp_frame
from pydantic import BaseModel, ValidationError

from microhive import MicroAgent, Namespace, Queue, consumer
from microhive.agent.dispatch import _prepare
from microhive.agent.handlers import collect
from microhive.codecs import JsonCodec, envelope_from_dict
from microhive.declarations import undeclared_queue
from microhive.envelope import Envelope
from microhive.errors import DecodeError
from microhive.transports.amqp import wire as amqp_wire
from microhive.transports.kafka import plain as kafka_plain
from microhive.transports.kafka import wire as kafka_wire
from microhive.transports.kafka.consumer import KafkaConsumer
from microhive.transports.nats import wire as nats_wire
from microhive.transports.nats.consumer import NatsConsumer
from microhive.transports.redis.consumer import RedisConsumer
from microhive.transports.redis.wire import new_message

CODEC = JsonCodec(max_size=64 * 1024)
NOTHING = object()


class Source:
    """Choices read from fuzz bytes, front to back; zeros once they run out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def byte(self) -> int:
        if self.at >= len(self.data):
            return 0
        self.at += 1
        return self.data[self.at - 1]

    def take(self, count: int) -> bytes:
        chunk = self.data[self.at : self.at + count]
        self.at += len(chunk)
        return chunk.ljust(count, b"\0")

    def chunk(self, limit: int = 255) -> bytes:
        return self.take(self.byte() % (limit + 1))

    def text(self, choices: tuple[str, ...]) -> str:
        """One of ``choices`` (names the code looks for), or some other text."""
        pick = self.byte()
        if pick < len(choices) * 16:
            return choices[pick % len(choices)]
        return self.chunk(32).decode("utf-8", "replace")

    def rest(self) -> bytes:
        chunk = self.data[self.at :]
        self.at = len(self.data)
        return chunk


# -- the body: codec, envelope, payload fitting ------------------------------------------


class Order(BaseModel):
    n: int
    note: str = ""


QUEUES = Namespace([Queue("jobs"), Queue("orders", schema=Order)], kind="queue")


class Handlers(MicroAgent):
    """The shapes of handler a payload is fitted to: keywords, one positional, a model."""

    @consumer(QUEUES.jobs)
    async def keywords(self, *, n: int, big: int | None = None) -> None: ...

    @consumer(QUEUES.jobs)
    async def anything(self, value: Any = None, **rest: Any) -> None: ...

    @consumer(QUEUES.orders)
    async def model(self, order: Order) -> None: ...


HANDLERS = collect(Handlers).consumers


def body(data: bytes) -> Envelope | None:
    """Bytes as a queue message: the envelope, then the payload fitted to each handler."""
    try:
        envelope: Envelope | None = CODEC.decode(data)
    except DecodeError:
        envelope = None
    try:
        document = CODEC.decode_value(data)
    except DecodeError:
        document = NOTHING
    if type(document) is dict:
        try:
            reference: Envelope | None = envelope_from_dict(document)
        except DecodeError:
            reference = None
        same(envelope, reference, document)
    elif document is NOTHING and envelope is not None:
        # the one leniency of the fast path: msgspec skips unknown keys without checking
        # that they are UTF-8 (the strict parser refuses the whole document)
        assert not _utf8(data), "decode() took what is not JSON"
    else:
        assert envelope is None, "only a JSON object is an envelope"
    if envelope is not None:
        fit(envelope)
    return envelope


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def same(fast: Envelope | None, reference: Envelope | None, document: dict[str, Any]) -> None:
    """The fast path (msgspec) takes exactly what the reference path takes, the same way."""
    assert (fast is None) == (reference is None), (fast, reference)
    if fast is None or reference is None:
        return
    for field in ("kind", "name", "payload", "sender", "correlation_id", "reply_to", "attempt"):
        assert getattr(fast, field) == getattr(reference, field), field
    assert dict(fast.headers) == dict(reference.headers)
    assert fast.sent_at == reference.sent_at
    if document.get("id") is not None:
        assert fast.id == reference.id


def fit(envelope: Envelope) -> None:
    """What the agent runtime does before a handler runs (microhive/agent/dispatch.py)."""
    for handler in HANDLERS:
        try:
            call = _prepare(None, handler, handler.spec, envelope)  # type: ignore[arg-type]
        except (TypeError, ValidationError):
            continue
        call.close()


# -- AMQP: properties and the headers table, as pamqp decodes them -----------------------

_SHORT, _OCTET, _STAMP, _TABLE = "s", "o", "t", "T"
PROPERTIES = (  # pamqp's Basic.Properties, in flag order (bit 15 down)
    _SHORT,  # content_type
    _SHORT,  # content_encoding
    _TABLE,  # headers
    _OCTET,  # delivery_mode
    _OCTET,  # priority
    _SHORT,  # correlation_id
    _SHORT,  # reply_to
    _SHORT,  # expiration
    _SHORT,  # message_id
    _STAMP,  # timestamp
    _SHORT,  # type
    _SHORT,  # user_id
    _SHORT,  # app_id
    _SHORT,  # cluster_id
)
_FIXED = {b"t": 1, b"b": 1, b"B": 1, b"s": 2, b"u": 2, b"I": 4, b"i": 4, b"l": 8, b"L": 8}
_FIXED |= {b"f": 4, b"d": 8, b"D": 5, b"T": 8, b"V": 0}
_TYPES = (*_FIXED, b"S", b"x", b"A", b"F")


def _short(source: Source) -> bytes:
    raw = source.chunk()
    return bytes([len(raw)]) + raw


def _long(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def _value(source: Source, depth: int) -> bytes:
    kind = _TYPES[source.byte() % (len(_TYPES) if depth < 3 else len(_FIXED) + 2)]
    if kind in _FIXED:
        return kind + source.take(_FIXED[kind])
    if kind in (b"S", b"x"):
        return kind + _long(source.chunk())
    if kind == b"A":
        return kind + _long(b"".join(_value(source, depth + 1) for _ in range(source.byte() % 4)))
    return kind + _table(source, depth + 1)


def _table(source: Source, depth: int = 0) -> bytes:
    entries = b"".join(
        _short(source) + _value(source, depth) for _ in range(source.byte() % (5 if depth else 9))
    )
    return _long(entries)


def amqp_properties(source: Source) -> bytes:
    """The flags and values of a content header: well-formed, any content (RabbitMQ checks
    the form, not the content, of what a publisher sends)."""
    flags = int.from_bytes(source.take(2), "big") & 0xFFFC
    parts = []
    for position, kind in enumerate(PROPERTIES):
        if not flags & (0x8000 >> position):
            continue
        if kind == _SHORT:
            parts.append(_short(source))
        elif kind == _OCTET:
            parts.append(source.take(1))
        elif kind == _STAMP:
            parts.append(source.take(8))
        else:
            parts.append(_table(source))
    return flags.to_bytes(2, "big") + b"".join(parts)


def amqp(data: bytes) -> None:
    """A delivered message's content header and body, as the AMQP consumer takes them."""
    source = Source(data)
    header = amqp_properties(source)
    message = source.rest()
    frames = amqp_wire.content_frames(1, header, message, 131072)
    _, _, content = amqp_frame.unmarshal(frames)  # what aiormq's reader does: must not raise
    properties = content.properties  # type: ignore[union-attr]
    envelope, error = amqp_wire.incoming(CODEC, message, properties, "jobs")
    assert (envelope is None) != (error is None)
    if envelope is not None:
        fit(envelope)


# -- Redis: the fields of a stream entry -------------------------------------------------


REDIS_QUEUE = Queue("jobs")


def redis(data: bytes) -> None:
    """An XREADGROUP entry's fields, as the consumer turns them into a delivery."""
    source = Source(data)
    names = (b"data", b"group", b"reason", b"attempt")
    fields: list[bytes] = []
    for _ in range(source.byte() % 5):
        pick = source.byte()
        fields.append(names[pick % 4] if pick < 128 else source.chunk(16))
        fields.append(source.chunk() if source.byte() % 4 else source.rest())
    new_message(fields)
    acked: list[bytes] = []
    consumer = SimpleNamespace(
        codec=CODEC,
        settler=SimpleNamespace(ack_foreign=acked.append),
        _loop=SimpleNamespace(time=lambda: 0.0),
        held={},
        _group_bytes=b"microhive",
        declaration=REDIS_QUEUE,
    )
    deliveries = RedisConsumer.accept(consumer, [[b"1-0", fields]])  # type: ignore[arg-type]
    assert len(deliveries) + len(acked) == 1
    for delivery in deliveries:
        if delivery.envelope is not None:
            fit(delivery.envelope)


# -- NATS: the header block --------------------------------------------------------------


def nats(data: bytes) -> None:
    """A JetStream message's headers: parsed, then the consumer's look at group and due."""
    source = Source(data)
    block = b"NATS/1.0" + source.chunk()
    headers = nats_wire.parse_headers(block)  # also where nats-py's own parser raises
    for name in (nats_wire.DUE, nats_wire.GROUP):
        if source.byte() % 2:
            headers[name] = source.text(("microhive", "0", "1" * 400, "9" * 5000, "-5", "1e3"))
    consumer = SimpleNamespace(
        durable="microhive",
        settler=SimpleNamespace(ack=lambda *_: None, tell=_nothing),
        _room=asyncio.Event(),
    )
    step = NatsConsumer._not_for_now(consumer, "$JS.ACK.x", headers)  # type: ignore[arg-type]
    try:
        step.send(None)
    except StopIteration:
        pass
    else:
        raise AssertionError("_not_for_now waited on something")
    body(source.rest())


async def _nothing(*_: Any) -> None:
    return None


# -- Kafka: record headers ---------------------------------------------------------------


def kafka(data: bytes) -> None:
    """A record with any headers and value, as the consumer takes it from a fetched batch."""
    source = Source(data)
    names = (
        kafka_wire.GROUP,
        kafka_wire.ATTEMPT,
        kafka_wire.DUE,
        kafka_wire.REASON,
        kafka_plain.MARK,
        kafka_plain.FIELDS,
    )
    headers = []
    for _ in range(source.byte() % 4):
        name = source.text(names)
        value = None if source.byte() == 255 else source.chunk()
        headers.append((name, value))
    value = None if source.byte() == 255 else source.rest()
    record = SimpleNamespace(
        topic="t", partition=0, offset=7, timestamp=0, headers=tuple(headers), value=value, key=None
    )
    given: list[Any] = []
    consumer = SimpleNamespace(
        codec=CODEC,
        declaration=undeclared_queue("fuzz"),
        group="microhive",
        unsettled=0,
        _idle=asyncio.Event(),
        handover=SimpleNamespace(give_all=given.extend),
    )
    offsets = SimpleNamespace(take=lambda _offset: True, skip=lambda _offset: None)
    KafkaConsumer._take(consumer, offsets, [record])  # type: ignore[arg-type]
    for name in names:
        kafka_wire.whole_number(kafka_wire.header(headers, name))  # type: ignore[arg-type]
    for delivery in given:
        if delivery.envelope is not None:
            fit(delivery.envelope)


PATHS = (body, amqp, redis, nats, kafka)


def one(data: bytes) -> None:
    """The fuzz target: the first byte picks the path, the rest is its input."""
    if data:
        PATHS[data[0] % len(PATHS)](data[1:])
