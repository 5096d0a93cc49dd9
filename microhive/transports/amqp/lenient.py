"""pamqp's decoders, made to take what any producer may send and RabbitMQ passes on.

pamqp raises on two kinds of values in a message's properties or headers table: a timestamp
beyond year 9999 and a short string (``message_id``, ``app_id``, a header's name) that is
not UTF-8. aiormq then drops the whole connection, RabbitMQ redelivers the message, and the
next connection fails on it again, forever. Importing this module replaces those decoders
in pamqp's tables with tolerant ones — for the whole process, since pamqp keeps one table.
A fenced internal: tests/canary/test_amqp_internals.py checks the names it replaces.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pamqp import decode


def _timestamp_in_range(value: bytes) -> tuple[int, datetime]:
    """pamqp's timestamp decoder, with a value beyond year 9999 read as that year's end."""
    try:
        return _pamqp_timestamp(value)
    except (ValueError, OverflowError, OSError):
        if len(value) < 8:  # truncated: a broken frame, as pamqp says
            raise
        return 8, datetime.max.replace(tzinfo=UTC)


def _short_text(value: bytes) -> tuple[int, str]:
    """pamqp's short string decoder, with bytes that are not UTF-8 replaced by U+FFFD."""
    try:
        return _pamqp_short_str(value)
    except UnicodeDecodeError:
        length = value[0]
        return length + 1, value[1 : length + 1].decode("utf-8", "replace")


def _table(value: bytes) -> tuple[int, dict[str, Any]]:
    """pamqp's field table decoder, with names that are not UTF-8 decoded with U+FFFD."""
    try:
        return _pamqp_field_table(value)
    except UnicodeDecodeError:
        pass
    end = 4 + int.from_bytes(value[:4], "big")
    if end > len(value):
        raise ValueError("Field table length exceeds available data")
    data: dict[str, Any] = {}
    offset = 4
    while offset < end:
        size = value[offset]
        name = value[offset + 1 : offset + 1 + size].decode("utf-8", "replace")
        offset += 1 + size
        consumed, data[name] = decode.embedded_value(value[offset:])
        offset += consumed
    return end, data


_pamqp_timestamp = decode.timestamp
_pamqp_short_str = decode.short_str
_pamqp_field_table = decode.field_table
decode.METHODS["timestamp"] = decode.TABLE_MAPPING[b"T"] = _timestamp_in_range
decode.METHODS["shortstr"] = decode.short_str = _short_text
decode.METHODS["table"] = decode.TABLE_MAPPING[b"F"] = decode.field_table = _table
