"""The frames of the hot paths, encoded by hand: publishes and acknowledgements.

They are the per-message work, and a few ``struct.pack`` calls cost a fraction of building
and marshalling pamqp frame objects.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from pamqp import commands as spec
from pamqp import encode
from pamqp import frame as pamqp_frame

FRAME_END = b"\xce"
_FRAME = struct.Struct(">BHI")
_HEADER_START = struct.Struct(">HHQH")  # class 60, weight 0, body size, property flags
_METHOD_TAG = struct.Struct(">BHIHHQB")  # a method frame with a delivery tag and bits
_SHORT = struct.Struct(">B")
_TIMESTAMP = struct.Struct(">Q")

# property flags, in the order the values follow
CONTENT_TYPE = 0x8000
HEADERS = 0x2000
DELIVERY_MODE = 0x1000
CORRELATION_ID = 0x0400
REPLY_TO = 0x0200
MESSAGE_ID = 0x0080
TIMESTAMP = 0x0040
TYPE = 0x0020
APP_ID = 0x0008

PERSISTENT = 2
TRANSIENT = 1


def _short(value: str) -> bytes:
    data = value.encode()
    if len(data) > 255:
        data = data[:255]
    return _SHORT.pack(len(data)) + data


def method_frame(channel: int, method: Any) -> bytes:
    """A method frame marshalled by pamqp (used for the cached ``Basic.Publish`` frames)."""
    data: bytes = pamqp_frame.marshal(method, channel)
    return data


def publish_method(channel: int, exchange: str, routing_key: str, mandatory: bool) -> bytes:
    """The ``Basic.Publish`` method frame a message's content frames follow."""
    return method_frame(
        channel,
        spec.Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory),
    )


def content_frames(channel: int, header: bytes, body: bytes, frame_max: int) -> bytes:
    """The content header frame and the body frame(s) of one message.

    ``header`` is the property part from :func:`properties`.
    """
    size = len(body)
    head = _HEADER_START.pack(60, 0, size, 0)[:-2] + header
    parts = [_FRAME.pack(2, channel, len(head)), head, FRAME_END]
    limit = frame_max - 8
    if size <= limit:
        if size:
            parts += [_FRAME.pack(3, channel, size), body, FRAME_END]
    else:
        view = memoryview(body)
        for start in range(0, size, limit):
            chunk = view[start : start + limit]
            parts += [_FRAME.pack(3, channel, len(chunk)), bytes(chunk), FRAME_END]
    return b"".join(parts)


def properties(
    *,
    content_type: str | None = None,
    delivery_mode: int | None = None,
    message_id: str | None = None,
    app_id: str | None = None,
    kind: str | None = None,
    timestamp: float | None = None,
    headers: Mapping[str, Any] | None = None,
    correlation_id: str | None = None,
    reply_to: str | None = None,
) -> bytes:
    """The property flags and values of a content header, for the properties microhive uses."""
    flags = 0
    parts: list[bytes] = []
    if content_type:
        flags |= CONTENT_TYPE
        parts.append(_short(content_type))
    if headers:
        flags |= HEADERS
        parts.append(encode.field_table(dict(headers)))
    if delivery_mode:
        flags |= DELIVERY_MODE
        parts.append(_SHORT.pack(delivery_mode))
    if correlation_id:
        flags |= CORRELATION_ID
        parts.append(_short(correlation_id))
    if reply_to:
        flags |= REPLY_TO
        parts.append(_short(reply_to))
    if message_id:
        flags |= MESSAGE_ID
        parts.append(_short(message_id))
    if timestamp is not None:
        flags |= TIMESTAMP
        parts.append(_TIMESTAMP.pack(int(timestamp)))
    if kind:
        flags |= TYPE
        parts.append(_short(kind))
    if app_id:
        flags |= APP_ID
        parts.append(_short(app_id))
    return flags.to_bytes(2, "big") + b"".join(parts)


def ack_frame(channel: int, tag: int, multiple: bool = False) -> bytes:
    """``Basic.Ack`` of ``tag`` (and every earlier one with ``multiple``)."""
    return _METHOD_TAG.pack(1, channel, 13, 60, 80, tag, 1 if multiple else 0) + FRAME_END


def nack_frame(channel: int, tag: int, requeue: bool) -> bytes:
    """``Basic.Nack`` of ``tag``: back to the queue with ``requeue``, else dropped."""
    return _METHOD_TAG.pack(1, channel, 13, 60, 120, tag, 2 if requeue else 0) + FRAME_END
