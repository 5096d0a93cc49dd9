"""What a queue looks like in Redis: its keys, and the fields of its stream entries.

A producer's entry has one field, ``data`` (the encoded envelope); a retry re-added for one
consumer group has a second, ``group``, and other groups skip it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .options import RedisOptions

DATA = b"data"
GROUP = b"group"


@dataclass(frozen=True, slots=True)
class QueueKeys:
    stream: str
    delayed: str
    dead: str
    retry_prefix: str

    @classmethod
    def of(cls, options: RedisOptions, queue: str, address: str | None = None) -> QueueKeys:
        """The keys of ``queue``; its stream is ``address`` verbatim when the declaration
        names an existing one (the other keys stay microhive's own)."""
        return cls(
            address or options.stream(queue),
            options.delayed(queue),
            options.dead(queue),
            options.retries(queue, ""),
        )


def xadd(stream: str, data: bytes, maxlen: int) -> tuple[Any, ...]:
    """The XADD of a producer's entry."""
    if maxlen:
        return (b"XADD", stream, b"MAXLEN", b"~", maxlen, b"*", DATA, data)
    return (b"XADD", stream, b"*", DATA, data)


def xadd_fields(stream: str, fields: list[Any], maxlen: int) -> tuple[Any, ...]:
    """The XADD of an entry with these fields (field, value, ...)."""
    if maxlen:
        return (b"XADD", stream, b"MAXLEN", b"~", maxlen, b"*", *fields)
    return (b"XADD", stream, b"*", *fields)


def new_message(fields: list[bytes] | None) -> bytes | None:
    """The ``data`` of an entry a producer added; None for retries and foreign entries."""
    if not fields:
        return None
    if len(fields) == 2 and fields[0] == DATA:
        return fields[1]
    found = dict(zip(fields[::2], fields[1::2], strict=False))
    return None if GROUP in found else found.get(DATA)


def entry_order(entry_id: bytes) -> tuple[int, int]:
    """Sort key of a stream entry id (``<ms>-<seq>``)."""
    milliseconds, _, sequence = entry_id.partition(b"-")
    return int(milliseconds), int(sequence or 0)


def ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def as_int(value: bytes | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def as_float(value: bytes | None, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default
