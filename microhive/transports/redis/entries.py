"""Stream entries and envelopes, both ways: what microhive writes, and what it makes of any
entry a producer added (microhive or not).

The rule (docs/transports/redis.md, "Plain clients"):

- An entry whose ``data`` is a JSON object with ``"v": 1`` is an envelope (microhive writes
  exactly that on JSON queues: one field ``data``, no marker needed, no extra bytes).
- An entry with the field ``microhive`` is one microhive wrote to a text or bytes queue:
  ``data`` is the plain body, ``microhive`` the envelope without its payload (the marker).
- Any other entry is adopted: ``data`` is the body (JSON, text or bytes as the queue says)
  and the other fields become headers; an entry without ``data`` has the payload
  ``{field: value}`` (strings). The envelope id is the entry id, ``sent_at`` its time.

``group`` is the field of microhive's retries (another group's are skipped).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ...adoption import Metadata, adopt, incoming
from ...codecs import Codec
from ...declarations import Queue
from ...envelope import Envelope
from ...errors import DecodeError
from .wire import DATA, GROUP

MARK = b"microhive"
"""Field of the entries microhive writes to text and bytes queues: the envelope, payload null."""

ENVELOPE = (b'{"v":1,', b'{"v": 1,')
"""How microhive's JSON envelopes start: an entry whose ``data`` does is one."""

Decoded = tuple[bytes, Envelope | None, str | None]
"""The raw body (``data``, empty without it), the envelope, and why it is None."""


def fields_of(codec: Codec, envelope: Envelope, data: bytes, queue: Queue) -> list[Any]:
    """The fields of the entry that carries ``envelope`` (encoded as ``data``) on ``queue``."""
    return [DATA, data] if queue.payload == "json" else marked(codec, envelope)


def marked(codec: Codec, envelope: Envelope) -> list[Any]:
    """The plain body as ``data`` (what a plain consumer reads), the rest under the marker."""
    body = envelope.payload
    plain = body.encode() if isinstance(body, str) else bytes(body)
    return [DATA, plain, MARK, codec.encode(replace(envelope, payload=None))]


def decode(codec: Codec, entry_id: bytes, fields: list[bytes], queue: Queue) -> Decoded:
    """The envelope of one stream entry of ``queue`` (its ``group`` field already dealt with)."""
    if len(fields) == 2 and fields[0] == DATA:
        raw = fields[1]
        if raw.startswith(ENVELOPE):  # microhive's own: the fast path
            envelope, error = incoming(codec, raw, queue)
            return raw, envelope, error
        meta = Metadata(entry_id.decode(), sent_at=_at(entry_id))
        return (raw, *incoming(codec, raw, queue, meta))
    found: dict[bytes, bytes | None] = dict(zip(fields[::2], fields[1::2], strict=False))
    body = found.pop(DATA, None)
    found.pop(GROUP, None)
    mark = found.pop(MARK, None)
    try:
        if mark is not None:
            return body or b"", _marked(codec, body or b"", mark, queue), None
        headers = {_text(k): _text(v or b"") for k, v in found.items()}
        if body is None:  # the fields are the message
            if queue.payload != "json":
                raise DecodeError(f"stream entry without a 'data' field (fields: {list(found)!r})")
            meta = Metadata(entry_id.decode(), sent_at=_at(entry_id))
            return b"", adopt(headers, queue, meta), None
        meta = Metadata(entry_id.decode(), headers=headers, sent_at=_at(entry_id))
        return (body, *incoming(codec, body, queue, meta))
    except DecodeError as exc:
        return body or b"", None, str(exc)


def _marked(codec: Codec, body: bytes, mark: bytes, queue: Queue) -> Envelope:
    envelope = codec.decode(mark)
    if queue.payload == "bytes":
        envelope.payload = bytes(body)
    elif queue.payload == "text":
        try:
            envelope.payload = body.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"queue {queue.name!r} takes UTF-8 text: {exc}") from None
    else:
        envelope.payload = codec.decode_value(body)
    return envelope


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _at(entry_id: bytes) -> float | None:
    """An entry id's time (``<ms>-<seq>``), in Unix seconds."""
    try:
        return int(entry_id.partition(b"-")[0]) / 1000
    except ValueError:
        return None


ORIGINAL = b"f:"
"""Prefix of a dead letter's copies of the other fields of its entry (``f:source``)."""
NO_DATA = b"without_data"


def kept(fields: list[bytes] | None) -> list[bytes]:
    """What a dead letter keeps of its entry's fields besides ``data`` (which it keeps as
    ``data``), so that its envelope can be made again as the consumer made it."""
    if not fields:
        return []
    names = fields[::2]
    out: list[bytes] = [] if DATA in names else [NO_DATA, b"1"]
    for name, value in zip(names, fields[1::2], strict=False):
        if name not in (DATA, GROUP):
            out += [ORIGINAL + name, value]
    return out


def original(found: dict[bytes, bytes]) -> list[bytes]:
    """The fields of the entry a dead letter came from (``kept`` undone)."""
    fields = [] if NO_DATA in found else [DATA, found.get(DATA, b"")]
    for name, value in found.items():
        if name.startswith(ORIGINAL):
            fields += [name[len(ORIGINAL) :], value]
    return fields
