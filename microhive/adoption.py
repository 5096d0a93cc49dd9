"""Messages from producers without microhive: recognising envelopes, adopting other bodies.

One rule for every engine (docs/wire-format.md, "Talking to services that don't use
microhive"): a body is a microhive envelope when the engine carried microhive's marker with
it (a header or content type the transport sets, ``Metadata.marked``) or when it is a JSON
object whose ``"v"`` is ``1`` — the documented field of the v1 envelope, so services that
write envelopes by hand keep working. Never by guessing from other keys: a foreign JSON
object whose ``kind`` happens to be ``"message"`` is a payload like any other. Any other body
is **adopted**: it becomes the payload of a message envelope made from what the engine knows
about it — JSON for ordinary queues, text or bytes where the queue says so
(``Queue(payload="text")``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .codecs import Codec, JsonCodec, envelope_from_dict
from .declarations import Queue
from .envelope import Envelope, Kind, new_id
from .errors import DecodeError, PayloadError

_MARKED_PREFIXES = (b'{"v":1,', b'{"v": 1,')
"""How microhive's own JSON (and the documented examples) start: the fast path."""


@dataclass(slots=True)
class Metadata:
    """What an engine knows about a message besides its body.

    ``marked``: the engine carried microhive's marker, so the body must be an envelope.
    ``routing_key`` (AMQP) and ``key`` (Kafka, partition keys) reach the handler as the
    headers ``x-routing-key`` and ``x-key`` of an adopted message.
    """

    id: str | None = None
    sender: str | None = None
    headers: Mapping[str, str] | None = None
    sent_at: float | None = None
    correlation_id: str | None = None
    routing_key: str | None = None
    key: str | None = None
    marked: bool = False


def incoming(
    codec: Codec, body: bytes, queue: Queue, meta: Metadata | None = None
) -> tuple[Envelope | None, str | None]:
    """The envelope of a received queue message, or ``(None, why)`` when it is undecodable."""
    try:
        return _incoming(codec, body, queue, meta), None
    except DecodeError as exc:
        return None, str(exc)


def _incoming(codec: Codec, body: bytes, queue: Queue, meta: Metadata | None) -> Envelope:
    if (meta is not None and meta.marked) or body.startswith(_MARKED_PREFIXES):
        return codec.decode(body)
    kind = queue.payload
    if kind == "json":
        if type(codec) is not JsonCodec:  # a codec of the user's own: its bytes are its own
            return codec.decode(body)
        document = codec.decode_value(body)
        if type(document) is dict and type(version := document.get("v")) is int and version == 1:
            return envelope_from_dict(document)
        return adopt(document, queue, meta)
    if kind == "text":
        try:
            return adopt(body.decode("utf-8"), queue, meta)
        except UnicodeDecodeError as exc:
            raise DecodeError(f"queue {queue.name!r} takes UTF-8 text: {exc}") from None
    return adopt(bytes(body), queue, meta)


def adopt(payload: Any, queue: Queue, meta: Metadata | None = None) -> Envelope:
    """A message envelope for ``payload``, a body some other client sent to ``queue``."""
    meta = meta or Metadata()
    headers = dict(meta.headers) if meta.headers else {}
    if meta.routing_key is not None:
        headers.setdefault("x-routing-key", meta.routing_key)
    if meta.key is not None:
        headers.setdefault("x-key", meta.key)
    return Envelope(
        Kind.MESSAGE,
        queue.name,
        payload,
        meta.sender or "",
        meta.id or new_id(),
        headers,
        meta.correlation_id,
        None,
        meta.sent_at if meta.sent_at is not None else time.time(),
        1,
    )


def plain_body(queue: Queue, payload: Any) -> bytes:
    """What microhive writes as the body of a message to a text or bytes queue: the payload
    itself, as plain consumers of that queue read it (the envelope's other fields travel in
    the engine's headers)."""
    if queue.payload == "text":
        if not isinstance(payload, str):
            raise PayloadError(
                f"queue {queue.name!r} takes text (a str), not {type(payload).__name__}"
            )
        return payload.encode()
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise PayloadError(f"queue {queue.name!r} takes bytes, not {type(payload).__name__}")
    return bytes(payload)
