"""Records without microhive, and microhive's records for clients without it.

The rule on Kafka (docs/transports/kafka.md, "Plain clients"):

- microhive marks every record it writes to a queue with the record header ``microhive``:
  ``e`` when the value is the envelope, ``p`` when the value is the bare payload (queues
  declared ``payload="text"|"bytes"``) and the envelope's other fields ride in the header
  ``microhive-envelope`` (JSON without the payload).
- Any other record is adopted (:mod:`microhive.adoption`): its value is the payload, its key
  the header ``x-key``, its record headers the envelope's headers (UTF-8, bad bytes
  replaced), its timestamp ``sent_at`` and ``<topic>:<partition>:<offset>`` its id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ...adoption import Metadata, incoming, plain_body
from ...codecs import Codec, envelope_from_dict
from ...declarations import Queue
from ...envelope import Envelope
from ...errors import DecodeError

MARK = "microhive"
"""The record header microhive sets on what it writes to a queue."""
FIELDS = "microhive-envelope"
"""With ``microhive: p``: the envelope without its payload (JSON)."""
ENVELOPE = b"e"
PAYLOAD = b"p"
MARKED: list[tuple[str, bytes]] = [(MARK, ENVELOPE)]
"""The headers of a plain send of an envelope: one constant list, shared (never mutated)."""


def outgoing(
    queue: Queue, envelope: Envelope, data: bytes
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The value and headers of a record for ``envelope`` (``data``: its encoding)."""
    kind = queue.payload
    if kind == "json":
        return data, MARKED
    value = plain_body(queue, envelope.payload)
    fields = {
        "v": 1,
        "id": envelope.id,
        "kind": envelope.kind,
        "name": envelope.name,
        "sender": envelope.sender,
        "headers": envelope.headers,
        "correlation_id": envelope.correlation_id,
        "reply_to": envelope.reply_to,
        "sent_at": envelope.sent_at,
        "attempt": envelope.attempt,
    }
    return value, [(MARK, PAYLOAD), (FIELDS, orjson.dumps(fields))]


def received(codec: Codec, record: Any, queue: Queue) -> tuple[Envelope | None, str | None]:
    """The envelope of a queue's record (marked or adopted), or ``(None, why)``."""
    raw = record.value or b""
    headers = record.headers
    mark = _value(headers, MARK) if headers else None
    if mark == ENVELOPE:
        try:
            return codec.decode(raw), None
        except DecodeError as exc:
            return None, str(exc)
    if mark == PAYLOAD:
        return _unfolded(raw, headers, queue)
    return incoming(codec, raw, queue, metadata(record))


def metadata(record: Any) -> Metadata:
    """What the record says about a message from a client without microhive."""
    key = record.key
    found: dict[str, str] = {}
    for name, value in record.headers or ():
        if name != MARK and not name.startswith("microhive-") and name not in found:
            found[name] = value.decode(errors="replace") if value is not None else ""
    return Metadata(
        id=f"{record.topic}:{record.partition}:{record.offset}",
        headers=found,
        sent_at=record.timestamp / 1000 if record.timestamp is not None else None,
        key=key.decode(errors="replace") if key is not None else None,
    )


def _unfolded(
    raw: bytes, headers: Sequence[tuple[str, bytes]], queue: Queue
) -> tuple[Envelope | None, str | None]:
    """An envelope microhive wrote as a bare payload plus the ``microhive-envelope`` header."""
    try:
        fields = orjson.loads(_value(headers, FIELDS) or b"")
        if type(fields) is not dict:
            raise DecodeError("header microhive-envelope is not a JSON object")
        if queue.payload == "bytes":
            fields["payload"] = bytes(raw)
        else:
            try:
                fields["payload"] = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DecodeError(f"queue {queue.name!r} takes UTF-8 text: {exc}") from None
        return envelope_from_dict(fields), None
    except orjson.JSONDecodeError as exc:
        return None, f"header microhive-envelope: {exc}"
    except DecodeError as exc:
        return None, str(exc)


def _value(headers: Sequence[tuple[str, bytes]], name: str) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def reencoded(codec: Codec, record: Any, queue: Queue) -> bytes | None:
    """A record as the envelope bytes ``tail()`` yields (None if it does not decode)."""
    headers = record.headers
    if headers and _value(headers, MARK) == ENVELOPE:
        return record.value or b""
    envelope, _ = received(codec, record, queue)
    if envelope is None:
        return None
    try:
        return codec.encode(envelope)
    except Exception:  # a bytes payload has no JSON form: tail() cannot show it
        return None
