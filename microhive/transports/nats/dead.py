"""A queue's dead-letter stream: reading, deleting, and what a requeue publishes.

A dead letter is the original message (body and headers) with microhive's reason, attempt
and time added in headers, on ``<prefix>.dead.<queue>`` in the stream ``<prefix>_dead_<queue>``.
A requeue publishes it to the target queue with ``Nats-Msg-Id: requeue.<stream>.<sequence>``
(JetStream's de-duplication window, two minutes by default, drops a second copy when a crashed
requeue is run again) and only then deletes it (``STREAM.MSG.DELETE``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from ...adoption import Metadata, incoming
from ...broker import DeadLetter
from ...codecs import Codec
from ...deadletters import requeued
from ...declarations import Queue
from ...errors import TransportError
from . import plain
from .jetstream import NO_MESSAGE, STREAM_NOT_FOUND, ApiError, JetStream
from .wire import (
    ATTEMPT,
    DEAD_AT,
    DELIVERIES,
    KEY,
    MESSAGE_ID,
    MSG_ID,
    QUEUE,
    REASON,
    SEQUENCE,
    parse_headers,
    to_float,
    to_int,
)

_ADDED = frozenset({REASON, QUEUE, DEAD_AT, SEQUENCE, DELIVERIES})
"""Headers the dead-lettering added (the others are the original message's)."""


@dataclass(frozen=True, slots=True)
class Stored:
    sequence: int
    raw: bytes
    headers: dict[str, str]


async def read(jetstream: JetStream, stream: str, subject: str, limit: int | None) -> list[Stored]:
    """The oldest ``limit`` (None: all) dead letters of the stream, in order."""
    found: list[Stored] = []
    sequence = 1
    while limit is None or len(found) < limit:
        try:
            answer = await jetstream.api(
                f"STREAM.MSG.GET.{stream}", {"seq": sequence, "next_by_subj": subject}
            )
        except ApiError as exc:
            if exc.err_code in (NO_MESSAGE, STREAM_NOT_FOUND) or exc.code == 404:
                break
            raise TransportError(f"dead letters in {stream!r}: {exc}") from None
        message = answer.get("message") or {}
        sequence = int(message.get("seq", sequence))
        raw = base64.b64decode(message.get("data") or b"")
        headers = parse_headers(base64.b64decode(message.get("hdrs") or b""))
        found.append(Stored(sequence, raw, headers))
        sequence += 1
    return found


async def delete(jetstream: JetStream, stream: str, sequence: int) -> None:
    """Delete one dead letter; one already gone is fine (a requeue run again)."""
    try:
        await jetstream.api(f"STREAM.MSG.DELETE.{stream}", {"seq": sequence, "no_erase": True})
    except ApiError as exc:
        if exc.code != 404 and exc.err_code not in (NO_MESSAGE, STREAM_NOT_FOUND):
            raise TransportError(f"deleting dead letter {sequence} of {stream!r}: {exc}") from None


def letter(codec: Codec, queue: Queue, item: Stored) -> DeadLetter:
    """What ``dead_letters()`` shows of a stored dead letter."""
    headers = item.headers
    original = {key: value for key, value in headers.items() if key not in _ADDED}
    if plain.MARKER in original:
        envelope, _ = plain.decode(codec, item.raw, queue, original)
    else:  # a plain client's message: adopted again, with the id and time it had
        meta = Metadata(
            id=headers.get(MESSAGE_ID) or headers.get(MSG_ID),
            headers={k: v for k, v in original.items() if not k.startswith("Microhive")},
            sent_at=to_float(headers.get(plain.SENT_AT), 0.0) or None,
        )
        envelope, _ = incoming(codec, item.raw, queue, meta)
    return DeadLetter(
        queue=queue.name,
        reason=headers.get(REASON, ""),
        raw=item.raw,
        envelope=envelope,
        attempt=to_int(headers.get(ATTEMPT), 1),
        dead_at=to_float(headers.get(DEAD_AT), 0.0),
    )


def republished(
    codec: Codec, dead: DeadLetter, item: Stored, target: Queue, stream: str
) -> tuple[bytes, dict[str, str]]:
    """The body and headers a requeue of ``dead`` to ``target`` publishes."""
    envelope = dead.envelope
    if envelope is None:  # never decoded: its bytes and its own headers, as they came
        headers = {k: v for k, v in item.headers.items() if not k.startswith("Microhive")}
        data = dead.raw
    elif target.payload == "json":
        data, headers = requeued(codec, dead, target.name), {plain.MARKER: plain.ENVELOPE}
    else:
        data, headers = plain.frame(codec, codec.decode(requeued(codec, dead, target.name)), target)
    if envelope is not None and KEY in envelope.headers:
        headers[KEY] = envelope.headers[KEY]
    headers[MSG_ID] = f"requeue.{stream}.{item.sequence}"
    return data, headers
