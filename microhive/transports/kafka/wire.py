"""Kafka record headers microhive writes, and reading them.

The message itself is always the envelope of docs/wire-format.md in the record's value; the
record key is the ``key=`` of ``send`` (UTF-8). Every record microhive writes to a queue
carries the marker header ``microhive`` (:mod:`.plain`). These ones mark microhive's moves
(retries, delays, dead letters), for its own consumers and for other tools.
"""

from __future__ import annotations

from collections.abc import Sequence

DUE = "microhive-due"
"""On the delay topic: when the record may go back to the queue (Unix time in ms)."""
GROUP = "microhive-group"
"""On a retry: the consumer group it is for; consumers of other groups pass over it."""
ATTEMPT = "microhive-attempt"
"""On retries and dead letters: the attempt number (also in the envelope)."""
REASON = "microhive-reason"
"""On a dead letter: why it was parked."""
QUEUE = "microhive-queue"
"""On a dead letter: the queue it came from."""
DEAD_AT = "microhive-dead-at"
"""On a dead letter: when it was parked (Unix time in seconds)."""


CONTROL = frozenset({DUE, GROUP, ATTEMPT, REASON, QUEUE, DEAD_AT})
"""Headers of microhive's moves (retries, delays, dead letters), not of the message."""


def header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    """The value of the first record header called ``name``, or None."""
    for key, value in headers:
        if key == name:
            return value.decode(errors="replace") if value is not None else ""
    return None


def whole_number(text: str | None) -> int | None:
    """A header's value as an integer written in ASCII digits, else None.

    Any producer can set these headers: ``str.isdigit`` alone lets "²" through, and
    ``int()`` refuses more than 4300 digits, and an exception here would end the reading.
    """
    if text is None or not text.isascii() or not text.isdigit():
        return None
    try:
        return int(text)
    except ValueError:
        return None


def encoded(**values: str) -> list[tuple[str, bytes]]:
    """Record headers from keyword arguments (``_`` in a name becomes ``-``)."""
    return [(f"microhive-{key.replace('_', '-')}", value.encode()) for key, value in values.items()]
