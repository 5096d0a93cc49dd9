"""How envelopes map onto AMQP 0-9-1 messages (the frames of the hot paths: frames.py).

The body is the codec's output (the JSON envelope of docs/wire-format.md); the standard
properties repeat what plain AMQP clients look at: ``message_id`` (envelope id), ``app_id``
(sender), ``type`` (kind), ``timestamp`` (sent_at), ``content_type``, ``delivery_mode`` 2,
and the envelope's headers (plus ``x-attempt`` from the second attempt on) as the
headers table. A message published
without microhive (a JSON body, as the seed's registrar sends with pika, or the tutorial's
``"Hello World!"`` on a text queue) is taken as the payload of an envelope made from those
same properties, see :func:`incoming`; a send to a text or bytes queue writes the payload
itself as the body, with the :data:`MARKER` header.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiormq.abc import DeliveredMessage
from pamqp import commands as spec

from ... import adoption
from ...broker import DeadLetter
from ...codecs import Codec
from ...declarations import Queue, undeclared_queue
from ...envelope import Envelope, Kind, new_id
from ...errors import DecodeError, PayloadError
from . import lenient  # noqa: F401 - makes pamqp's decoders take any producer's values
from .frames import (
    FRAME_END,
    PERSISTENT,
    TRANSIENT,
    ack_frame,
    content_frames,
    method_frame,
    nack_frame,
    properties,
    publish_method,
)

__all__ = [
    "FRAME_END",
    "MARKER",
    "PERSISTENT",
    "TRANSIENT",
    "ack_frame",
    "content_frames",
    "dead_letter",
    "dead_letter_properties",
    "incoming",
    "marked",
    "message_properties",
    "metadata",
    "method_frame",
    "nack_frame",
    "payload_body",
    "payload_properties",
    "properties",
    "publish_method",
]

_KINDS = {kind.value: kind for kind in Kind}


def message_properties(envelope: Envelope, content_type: str, persistent: bool = True) -> bytes:
    """The properties of a queue message carrying ``envelope``."""
    headers: dict[str, Any] | None = None
    if envelope.headers or envelope.attempt > 1:
        headers = dict(envelope.headers)
        if envelope.attempt > 1:
            headers["x-attempt"] = envelope.attempt
    return _envelope_properties(envelope, content_type, persistent, headers)


def _envelope_properties(
    envelope: Envelope, content_type: str, persistent: bool, headers: dict[str, Any] | None
) -> bytes:
    """The standard properties that repeat the envelope's fields (id, sender, kind, time)."""
    return properties(
        content_type=content_type,
        delivery_mode=PERSISTENT if persistent else TRANSIENT,
        message_id=envelope.id,
        app_id=envelope.sender or None,
        kind=envelope.kind.value,
        timestamp=envelope.sent_at,
        headers=headers,
        correlation_id=envelope.correlation_id,
        reply_to=envelope.reply_to,
    )


MARKER = "x-microhive"
"""The header of a message whose body is not microhive's JSON envelope but the payload
itself (value ``text`` or ``bytes``: a send to a ``Queue(payload="text"|"bytes")``), the
envelope's other fields being in the properties. JSON envelopes need no marker: they are
recognised by their ``"v": 1`` (microhive/adoption.py)."""

_OWN_HEADERS = frozenset(
    {MARKER, "x-attempt", "x-sent-at", "x-reason", "x-queue", "x-dead-at", "x-routing-key"}
)
"""Headers microhive writes for itself beside a text/bytes payload: not the envelope's."""


_ENVELOPE_START = (b'{"v":1,', b'{"v": 1,')
"""How microhive's JSON envelopes start: decoded without building adoption metadata."""


def _queue_of(queue: Queue | str) -> Queue:
    return queue if isinstance(queue, Queue) else undeclared_queue(queue)


def incoming(
    codec: Codec,
    body: bytes,
    props: spec.Basic.Properties,
    queue: Queue | str,
    routing_key: str | None = None,
) -> tuple[Envelope | None, str | None]:
    """The envelope of a received queue message, or ``(None, why)`` when it is undecodable.

    microhive's own text/bytes messages (the :data:`MARKER` header) are rebuilt from their
    properties; every other body goes by the rule of :func:`microhive.adoption.incoming`: a
    JSON envelope (``"v": 1``) is decoded, anything else is adopted as the payload, with the
    AMQP ``message_id`` as id, ``app_id`` as sender, the string-valued headers, the
    ``timestamp``, the ``correlation_id`` and the delivery's routing key (``x-routing-key``).
    """
    declared = _queue_of(queue)
    headers = props.headers
    if headers and MARKER in headers:
        try:
            return marked(body, props, declared), None
        except DecodeError as exc:
            return None, str(exc)
    if body.startswith(_ENVELOPE_START):  # the fast path of microhive's own messages
        return adoption.incoming(codec, body, declared)
    return adoption.incoming(codec, body, declared, metadata(props, routing_key))


def _strings(
    headers: Mapping[Any, Any] | None, skip: frozenset[str] = frozenset()
) -> dict[str, str]:
    found: dict[str, str] = {}
    if headers:
        for key, value in headers.items():
            if not isinstance(key, str) or key in skip:
                continue
            if isinstance(value, str):
                found[key] = value
            elif isinstance(value, bytes):
                found[key] = value.decode("utf-8", "replace")
    return found


def _stamp(props: spec.Basic.Properties) -> float | None:
    stamp: Any = props.timestamp
    try:
        return float(stamp.timestamp()) if stamp is not None else None
    except (AttributeError, ValueError, OverflowError, OSError):
        return None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def metadata(props: spec.Basic.Properties, routing_key: str | None = None) -> adoption.Metadata:
    """What AMQP says about a message besides its body, for adoption."""
    return adoption.Metadata(
        id=_text(props.message_id) or None,
        sender=_text(props.app_id) or None,
        headers=_strings(props.headers),
        sent_at=_stamp(props),
        correlation_id=_text(props.correlation_id) or None,
        routing_key=routing_key,
    )


def marked(body: bytes, props: spec.Basic.Properties, queue: Queue) -> Envelope:
    """The envelope of a text/bytes message microhive sent: the body is its payload."""
    headers = props.headers or {}
    form = _text(headers.get(MARKER))
    if form == "text":
        try:
            payload: Any = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"queue {queue.name!r} takes UTF-8 text: {exc}") from None
    elif form == "bytes":
        payload = bytes(body)
    else:
        raise DecodeError(f"header {MARKER!r} must be 'text' or 'bytes', not {form!r}")
    kind = _KINDS.get(_text(props.message_type) or "message")
    if kind is None:
        raise DecodeError(f"AMQP type {props.message_type!r} is not a microhive kind")
    attempt: Any = headers.get("x-attempt", 1)
    if type(attempt) is not int or attempt < 1:
        raise DecodeError(f"header 'x-attempt' must be an integer >= 1, not {attempt!r}")
    sent_at: float | None = None
    exact = _text(headers.get("x-sent-at"))
    if exact is not None:
        try:
            sent_at = float(exact)
        except ValueError:
            sent_at = None
    if sent_at is None or not math.isfinite(sent_at):
        sent_at = _stamp(props)
    return Envelope(
        kind,
        queue.name,
        payload,
        _text(props.app_id) or "",
        _text(props.message_id) or new_id(),
        _strings(headers, _OWN_HEADERS),
        _text(props.correlation_id) or None,
        _text(props.reply_to) or None,
        sent_at if sent_at is not None else time.time(),
        attempt,
    )


def payload_body(envelope: Envelope, form: str) -> bytes:
    """The body of a send to a text/bytes queue: the payload itself."""
    payload = envelope.payload
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    raise PayloadError(
        f"queue {envelope.name!r} takes {form} payloads (str or bytes), "
        f"not {type(payload).__name__}"
    )


def payload_properties(
    envelope: Envelope, form: str, persistent: bool = True, extra: Mapping[str, Any] = {}
) -> bytes:
    """The properties of a text/bytes message: the envelope's fields and the marker."""
    headers: dict[str, Any] = {
        **envelope.headers,
        MARKER: form,
        "x-sent-at": repr(envelope.sent_at),
    }
    if envelope.attempt > 1:
        headers["x-attempt"] = envelope.attempt
    headers.update(extra)
    content_type = "text/plain; charset=utf-8" if form == "text" else "application/octet-stream"
    return _envelope_properties(envelope, content_type, persistent, headers)


_DEAD_HEADERS = frozenset({"x-reason", "x-queue", "x-dead-at", "x-attempt"})


def dead_letter_properties(
    queue: Queue | str, envelope: Envelope | None, reason: str, content_type: str
) -> bytes:
    """The properties of a message microhive dead-letters: why, when, which attempt, from
    which queue (headers ``x-reason``, ``x-dead-at``, ``x-attempt``, ``x-queue``); a text or
    bytes payload keeps the marker and the envelope's fields (:func:`payload_properties`)."""
    declared = _queue_of(queue)
    headers: dict[str, Any] = {
        "x-reason": reason,
        "x-attempt": envelope.attempt if envelope is not None else 1,
        "x-queue": declared.name,
        "x-dead-at": datetime.fromtimestamp(time.time(), UTC),
    }
    if envelope is not None and declared.payload != "json":
        return payload_properties(envelope, declared.payload, extra=headers)
    if envelope is not None and envelope.headers:
        headers.update({k: v for k, v in envelope.headers.items() if k not in headers})
    return properties(
        content_type=content_type,
        delivery_mode=PERSISTENT,
        message_id=envelope.id if envelope is not None else None,
        app_id=(envelope.sender or None) if envelope is not None else None,
        kind=envelope.kind.value if envelope is not None else None,
        timestamp=envelope.sent_at if envelope is not None else None,
        headers=headers,
    )


def dead_letter(codec: Codec, queue: Queue | str, message: DeliveredMessage) -> DeadLetter:
    """A message of a dead-letter queue, dead-lettered by microhive (its headers say why) or
    by RabbitMQ itself (overflow, a reject, expiry: its ``x-death`` header says why)."""
    declared = _queue_of(queue)
    props = message.header.properties
    headers = props.headers or {}
    if MARKER in headers or message.body.startswith(_ENVELOPE_START):
        envelope, _ = incoming(codec, message.body, props, declared)
    else:  # adopted: the dead-letter headers are not the message's
        meta = metadata(props)
        meta.headers = _strings(headers, _DEAD_HEADERS)
        envelope, _ = adoption.incoming(codec, message.body, declared, meta)
    reason = _text(headers.get("x-reason"))
    attempt = headers.get("x-attempt")
    stamp: Any = headers.get("x-dead-at")
    dead_at = stamp.timestamp() if isinstance(stamp, datetime) else None
    if reason is None:
        deaths: Any = headers.get("x-death") or [{}]
        first: Any = deaths[0] if isinstance(deaths, list) and deaths else {}
        if not isinstance(first, dict):
            first = {}
        why = _text(first.get("reason")) or "dead-lettered"
        reason = f"{why} (by RabbitMQ)"
        stamp = first.get("time")
        dead_at = stamp.timestamp() if hasattr(stamp, "timestamp") else None
    if not isinstance(attempt, int) or isinstance(attempt, bool):
        attempt = envelope.attempt if envelope is not None else 1
    if not isinstance(dead_at, int | float) or isinstance(dead_at, bool):
        dead_at = time.time()
    return DeadLetter(
        queue=declared.name,
        reason=reason,
        raw=message.body,
        envelope=envelope,
        attempt=attempt,
        dead_at=float(dead_at),
    )
