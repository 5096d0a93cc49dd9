"""aiormq's frame reader, replaced by a buffered one: the receiving half of the hot path.

aiormq reads each frame with three ``readexactly`` calls under a lock into a ``BytesIO``,
then has pamqp decode it by walking each class's attribute list. A delivery is three frames
(``Basic.Deliver``, a content header, the body) and a publisher confirm one more, so on a
busy connection that was a quarter of microhive's CPU. :class:`BufferedFrames` reads what
the socket has in one call and cuts every complete frame out of it; the frames of the hot
path (``Basic.Deliver``, ``Basic.Ack``, content headers, bodies) are decoded by hand into
the very objects pamqp builds, everything else (and anything unusual, such as a property
list longer than one flag word) by pamqp itself. tests/amqp/test_reader.py checks
that both give equal results (or both fail) for any frame (hypothesis).

:func:`install` (called by the link before it connects) makes every aiormq connection opened
after it use this reader — for the whole process, since aiormq looks its ``FrameReceiver`` up
by name when it connects (a fenced internal: :data:`BORROWED`,
tests/canary/test_amqp_internals.py).

A consumer's channel can also be registered with :func:`deliver_directly`: the reader then
hands that channel's deliveries to the consumer itself as it cuts their frames out of the
buffer, instead of passing each frame through aiormq's per-channel queue and reader task.
"""

from __future__ import annotations

import logging
import struct
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import aiormq.connection
from aiormq.abc import DeliveredMessage
from aiormq.exceptions import AMQPConnectionError, InvalidFrameError, ProtocolSyntaxError
from pamqp import commands as spec
from pamqp import decode
from pamqp import frame as pamqp_frame
from pamqp.body import ContentBody
from pamqp.exceptions import PAMQPException
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from . import lenient  # noqa: F401 - the property decoders this module calls are the lenient ones

BORROWED = (
    "aiormq.connection.FrameReceiver",  # replaced by name: Connection.connect builds one
    "FrameReceiver(reader).reader/.lock/.started",  # what its get_frame works with
    "pamqp Basic.Properties/Deliver/Ack __slots__",  # filled in directly, as pamqp does
    "aiormq.Connection.connect_context (connect() builds FrameReceiver in our context)",
    "aiormq.Connection.channels_by_number (.channels: where a channel's frames go)",
)

log = logging.getLogger(__name__)

CONNECTING: ContextVar[Any] = ContextVar("microhive_amqp_connecting", default=None)
"""The aiormq connection whose ``connect()`` runs in this context: set by the link, so that
the reader that connection builds knows whose frames it reads."""

_RECEIVERS: weakref.WeakKeyDictionary[Any, BufferedFrames] = weakref.WeakKeyDictionary()

_FRAME = struct.Struct(">BHI")
_METHOD = struct.Struct(">I")
_LONGLONG = struct.Struct(">q")  # signed, as pamqp reads a longlong
_HEADER = struct.Struct(">HHQH")  # class, weight, body size, the first property flag word
_FRAME_END = 0xCE
_DELIVER = spec.Basic.Deliver.index
_ACK = spec.Basic.Ack.index
_READ = 65536

_Properties = spec.Basic.Properties
_PROPERTY_SLOTS = tuple(_Properties.__slots__)
_SHORT_STRINGS = (
    (0x8000, "content_type"),
    (0x4000, "content_encoding"),
)
_AFTER_PRIORITY = (
    (0x0400, "correlation_id"),
    (0x0200, "reply_to"),
    (0x0100, "expiration"),
    (0x0080, "message_id"),
)
_AFTER_TIMESTAMP = (
    (0x0020, "message_type"),
    (0x0010, "user_id"),
    (0x0008, "app_id"),
    (0x0004, "cluster_id"),
)


class _Unusual(Exception):
    """A frame the hand decoders leave to pamqp (truncated values, more flag words)."""


def _short(data: bytes, at: int, end: int) -> tuple[str, int]:
    size = data[at]
    stop = at + 1 + size
    if stop > end:
        raise _Unusual
    raw = data[at + 1 : stop]
    try:
        return raw.decode("utf-8"), stop
    except UnicodeDecodeError:  # as lenient.py decodes it
        return raw.decode("utf-8", "replace"), stop


def _properties(data: bytes, flags: int, at: int, end: int) -> Any:
    """Basic.Properties from ``data[at:end]``, in the order and with the decoders of pamqp."""
    if flags & 1:
        raise _Unusual  # a second flag word: pamqp's business
    found: Any = _Properties.__new__(_Properties)
    for name in _PROPERTY_SLOTS:
        setattr(found, name, None)
    found.cluster_id = ""  # pamqp's default when the flag is absent
    for flag, name in _SHORT_STRINGS:
        if flags & flag:
            value, at = _short(data, at, end)
            setattr(found, name, value)
    if flags & 0x2000:
        size, found.headers = decode.METHODS["table"](data[at:end])  # as pamqp reads it
        at += size
        if at > end:
            raise _Unusual
    if flags & 0x1000:
        if at >= end:
            raise _Unusual
        found.delivery_mode = data[at]
        at += 1
    if flags & 0x0800:
        if at >= end:
            raise _Unusual
        found.priority = data[at]
        at += 1
    for flag, name in _AFTER_PRIORITY:
        if flags & flag:
            value, at = _short(data, at, end)
            setattr(found, name, value)
    if flags & 0x0040:
        if at + 8 > end:
            raise _Unusual
        _, found.timestamp = decode.METHODS["timestamp"](data[at : at + 8])
        at += 8
    for flag, name in _AFTER_TIMESTAMP:
        if flags & flag:
            value, at = _short(data, at, end)
            setattr(found, name, value)
    return found


def _content_header(data: bytes, at: int, end: int) -> ContentHeader:
    if at + 14 > end:
        raise _Unusual
    class_id, weight, body_size, flags = _HEADER.unpack_from(data, at)
    header = ContentHeader.__new__(ContentHeader)
    header.class_id = class_id
    header.weight = weight
    header.body_size = body_size
    header.properties = _properties(data, flags, at + 14, end)
    return header


def _deliver(data: bytes, at: int, end: int) -> spec.Basic.Deliver:
    consumer_tag, at = _short(data, at, end)
    if at + 9 > end:
        raise _Unusual
    (delivery_tag,) = _LONGLONG.unpack_from(data, at)
    redelivered = bool(data[at + 8] & 1)
    exchange, at = _short(data, at + 9, end)
    routing_key, at = _short(data, at, end)
    deliver = spec.Basic.Deliver.__new__(spec.Basic.Deliver)
    deliver.consumer_tag = consumer_tag
    deliver.delivery_tag = delivery_tag
    deliver.redelivered = redelivered
    deliver.exchange = exchange
    deliver.routing_key = routing_key
    return deliver


def _ack(data: bytes, at: int, end: int) -> spec.Basic.Ack:
    if at + 9 > end:
        raise _Unusual
    ack = spec.Basic.Ack.__new__(spec.Basic.Ack)
    (ack.delivery_tag,) = _LONGLONG.unpack_from(data, at)
    ack.multiple = bool(data[at + 8] & 1)
    return ack


def decode_frame(data: bytes, at: int, size: int) -> tuple[int, int, Any]:
    """The frame of ``size`` payload bytes at ``data[at:]``, as ``pamqp.frame.unmarshal``
    returns it: ``(bytes it took, channel, frame)``; raises as pamqp does."""
    kind, channel, _ = _FRAME.unpack_from(data, at)
    return _decode(data, at, kind, channel, size)


def _decode(data: bytes, at: int, kind: int, channel: int, size: int) -> tuple[int, int, Any]:
    start, end = at + 7, at + 7 + size
    if size and end < len(data) and data[end] == _FRAME_END:
        try:
            if kind == 3:
                return size + 8, channel, ContentBody(data[start:end])
            if kind == 2:
                return size + 8, channel, _content_header(data, start, end)
            if kind == 1 and size >= 4:
                method = _METHOD.unpack_from(data, start)[0]
                if method == _DELIVER:
                    return size + 8, channel, _deliver(data, start + 4, end)
                if method == _ACK:
                    return size + 8, channel, _ack(data, start + 4, end)
        except (_Unusual, IndexError, ValueError, struct.error):
            pass  # pamqp decodes it below, or says what is wrong with it
    return pamqp_frame.unmarshal(data[at : end + 1])


class _Delivering:
    """The consumer of one channel, fed its deliveries' frames by the reader itself."""

    __slots__ = ("channel", "deliver", "header", "parts", "size", "take")

    def __init__(self, channel: Any, take: Callable[[DeliveredMessage], None]) -> None:
        self.channel = channel
        self.take = take
        self.deliver: Any = None
        self.header: ContentHeader | None = None
        self.parts: list[bytes] = []
        self.size = 0

    def feed(self, frame: Any) -> bool:
        """Take ``frame`` if it is the next of a delivery; False leaves it to aiormq."""
        if self.deliver is None:
            if type(frame) is not spec.Basic.Deliver:
                return False
            self.deliver = frame
            return True
        header = self.header
        if header is None:
            if isinstance(frame, ContentHeader):
                self.header = frame
                if not frame.body_size:
                    self._done(b"")
                return True
        elif isinstance(frame, ContentBody):
            self.parts.append(frame.value)
            self.size += len(frame.value)
            if self.size >= header.body_size:
                parts = self.parts
                self._done(parts[0] if len(parts) == 1 else b"".join(parts))
            return True
        log.error("AMQP channel %s: %r in the middle of a delivery", self.channel.number, frame)
        self.deliver, self.header, self.parts, self.size = None, None, [], 0
        return False  # the channel's own reader makes of it what aiormq does

    def _done(self, body: bytes) -> None:
        assert self.header is not None
        message = DeliveredMessage(
            delivery=self.deliver, header=self.header, body=body, channel=self.channel
        )
        self.deliver, self.header, self.parts, self.size = None, None, [], 0
        try:
            self.take(message)
        except Exception:  # a consumer's fault must not end the connection's reader
            log.exception("AMQP channel %s: a delivery could not be taken", self.channel.number)


def deliver_directly(channel: Any, take: Callable[[DeliveredMessage], None]) -> bool:
    """Have the connection's reader hand ``channel``'s deliveries to ``take`` as they are
    read, ahead of aiormq's per-channel frame queue and reader task (which still get every
    other frame of the channel). False where the connection's reader is not ours."""
    connection = getattr(channel, "connection", None)
    receiver = None if connection is None else _RECEIVERS.get(connection)
    if receiver is None:
        return False
    receiver.direct[channel.number] = _Delivering(channel, take)
    return True


_HEARTBEAT = (0, 0, Heartbeat())  # what the reader returns after deliveries it handed out


class BufferedFrames(aiormq.connection.FrameReceiver):
    """aiormq's frame receiver, reading whatever the socket has and decoding frame by frame
    from that buffer; the same frames, and the same errors, as the one it replaces."""

    def __init__(self, reader: Any) -> None:
        super().__init__(reader)
        self._data = b""
        self._at = 0
        connection = CONNECTING.get()
        self.direct: dict[int, _Delivering] = {}  # channel number -> its consumer
        # weakly: _RECEIVERS holds this reader for as long as the connection lives
        self._connection: Callable[[], Any] = lambda: None
        if connection is not None:
            self._connection = weakref.ref(connection)
            _RECEIVERS[connection] = self

    async def get_frame(self) -> aiormq.connection.ReceivedFrame:
        handed = False  # a delivery went to its consumer from here
        while True:
            data, at = self._data, self._at
            if len(data) - at >= 7 and self.started:  # a whole frame may be here already
                kind, channel, size = _FRAME.unpack_from(data, at)
                if len(data) - at >= size + 8:
                    self._at = at + size + 8
                    try:
                        found = _decode(data, at, kind, channel, size)
                    except PAMQPException as exc:
                        raise InvalidFrameError(str(exc)) from exc
                    if channel and self.direct and self._handed(channel, found[2]):
                        handed = True
                        continue
                    return found
            if handed:  # aiormq counts frames to tell a stuck connection: give it one
                return _HEARTBEAT
            if len(data) == at and self.reader.at_eof():
                del self.reader
                raise StopAsyncIteration
            async with self.lock:
                await self._fill(7)
                if not self.started:
                    if self._data[self._at :].startswith(b"AMQP"):
                        raise ProtocolSyntaxError("Unexpected AMQP protocol header")
                    self.started = True
                size = _FRAME.unpack_from(self._data, self._at)[2]
                await self._fill(size + 8)

    def _handed(self, number: int, frame: Any) -> bool:
        """``frame`` went to the channel's direct consumer (if the channel is still the one
        it was registered for: aiormq gives a closed channel's number to the next)."""
        delivering = self.direct.get(number)
        if delivering is None:
            return False
        if delivering.deliver is None and (
            getattr(self._connection(), "channels", {}).get(number) is not delivering.channel
        ):
            del self.direct[number]
            return False
        return delivering.feed(frame)

    async def _fill(self, wanted: int) -> None:
        """Read until ``wanted`` bytes are buffered, with aiormq's errors."""
        while len(self._data) - self._at < wanted:
            try:
                chunk = await self.reader.read(max(_READ, wanted))
            except ConnectionRefusedError as exc:
                raise AMQPConnectionError(f"Server connection refused: {exc!r}") from exc
            except ConnectionResetError as exc:
                raise AMQPConnectionError(f"Server connection reset: {exc!r}") from exc
            except ConnectionError as exc:
                raise AMQPConnectionError(f"Server connection error: {exc!r}") from exc
            except OSError as exc:
                raise AMQPConnectionError(f"Server communication error: {exc!r}") from exc
            if not chunk:
                buffered = len(self._data) - self._at
                raise AMQPConnectionError(
                    "Server connection unexpectedly closed. "
                    f"Read {buffered} bytes but {wanted} bytes expected"
                )
            self._data = self._data[self._at :] + chunk
            self._at = 0


def install() -> None:
    """Have aiormq connections opened from now on read with :class:`BufferedFrames`."""
    aiormq.connection.FrameReceiver = BufferedFrames  # type: ignore[misc]
