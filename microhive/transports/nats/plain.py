"""Messages of plain NATS clients, and microhive's marker: the adoption rule on NATS.

Every message microhive stores in a queue carries the header ``Microhive``:

- ``Microhive: 1`` — the body is an envelope, encoded by the broker's codec;
- ``Microhive: payload`` — the body is the payload itself (queues declared with
  ``payload="text"`` or ``"bytes"``, so a plain consumer reads exactly the text or bytes),
  and the envelope's fields travel in headers (``Microhive-Id``, ``-Sender``, ``-Sent-At``,
  ``-Attempt``, ``-Correlation-Id``; the envelope's own headers as NATS headers).

Any other message goes through :func:`microhive.adoption.incoming` with what NATS knows of
it: its headers (all of them, as the envelope's headers), ``Nats-Msg-Id`` as the id, the time
JetStream stored it as ``sent_at``, and its subject as ``x-routing-key``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from ...adoption import Metadata, incoming, plain_body
from ...codecs import Codec
from ...declarations import Queue
from ...envelope import Envelope, Kind
from ...errors import DecodeError
from . import wire
from .wire import ATTEMPT, MSG_ID, to_float, to_int

MARKER = wire.MARKER
ENVELOPE = wire.MARKER_ENVELOPE
PAYLOAD = "payload"
SENDER = "Microhive-Sender"
SENT_AT = "Microhive-Sent-At"
CORRELATION = "Microhive-Correlation-Id"
ID = "Microhive-Id"

MARKED = wire.MARKED


def frame(codec: Codec, envelope: Envelope, queue: Queue) -> tuple[bytes, dict[str, str]]:
    """The body and headers microhive stores for ``envelope`` in ``queue``."""
    if queue.payload == "json":
        return codec.encode(envelope), {MARKER: ENVELOPE}
    body = plain_body(queue, envelope.payload)
    headers = {key: value for key, value in envelope.headers.items() if not _ours(key)}
    headers[MARKER] = PAYLOAD
    headers[ID] = envelope.id
    headers[SENT_AT] = repr(envelope.sent_at)
    headers[ATTEMPT] = str(envelope.attempt)
    if envelope.sender:
        headers[SENDER] = envelope.sender
    if envelope.correlation_id is not None:
        headers[CORRELATION] = envelope.correlation_id
    return body, headers


def decode(
    codec: Codec,
    body: bytes,
    queue: Queue,
    headers: Mapping[str, str] | None,
    subject: bytes | str = b"",
    reply: str = "",
) -> tuple[Envelope | None, str | None]:
    """The envelope of a stored message, or ``(None, why)`` when it is undecodable."""
    if headers:
        marker = headers.get(MARKER)
        if marker == ENVELOPE:  # the hot path: microhive's own
            try:
                return codec.decode(body), None
            except DecodeError as exc:
                return None, str(exc)
        if marker == PAYLOAD:
            return _from_headers(body, queue, headers)
    meta = Metadata(
        id=headers.get(MSG_ID) if headers else None,
        headers=headers,
        sent_at=stored_at(reply) if reply else None,
        routing_key=(subject.decode(errors="replace") if isinstance(subject, bytes) else subject)
        or None,
        marked=False,
    )
    return incoming(codec, body, queue, meta)


def _from_headers(
    body: bytes, queue: Queue, headers: Mapping[str, str]
) -> tuple[Envelope | None, str | None]:
    payload: str | bytes
    if queue.payload == "bytes":
        payload = bytes(body)
    else:  # a text queue, or one that was a text queue when this was sent
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"queue {queue.name!r} takes UTF-8 text: {exc}"
    envelope = Envelope(
        Kind.MESSAGE,
        queue.name,
        payload,
        headers.get(SENDER, ""),
        headers.get(ID) or headers.get(MSG_ID) or "",
        {key: value for key, value in headers.items() if not _ours(key)},
        headers.get(CORRELATION),
        None,
        to_float(headers.get(SENT_AT), time.time()),
        max(1, to_int(headers.get(ATTEMPT), 1)),
    )
    if not envelope.id:
        return None, "a payload message without Microhive-Id"
    return envelope, None


def _ours(key: str) -> bool:
    """Headers microhive or JetStream set, not the envelope's own."""
    return key.startswith(("Microhive", "Nats-"))


def stored_at(reply: str) -> float | None:
    """When JetStream stored a delivered message (the ack subject's timestamp), in seconds."""
    parts = reply.split(".")
    offset = 0 if len(parts) == 9 else 2
    try:
        return int(parts[7 + offset]) / 1e9
    except (IndexError, ValueError):
        return None
