"""Codecs turn envelopes into bytes and back. JSON (orjson) is the default.

See docs/wire-format.md: the JSON form is what non-Python services read and write.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from .envelope import Envelope, Kind
from .errors import DecodeError, PayloadError, PayloadTooLarge

DEFAULT_MAX_SIZE = 4 * 1024 * 1024
WIRE_VERSION = 1
_KINDS = {kind.value: kind for kind in Kind}


class Codec(Protocol):
    """What a transport needs to put envelopes on the wire."""

    content_type: str
    max_size: int

    def encode(self, envelope: Envelope) -> bytes: ...

    def decode(self, data: bytes) -> Envelope: ...

    def encode_value(self, value: Any) -> bytes: ...

    def decode_value(self, data: bytes) -> Any: ...


class JsonCodec:
    """The envelope as one JSON object; payloads must be JSON values (no pickle, ever)."""

    content_type = "application/json"

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_size = max_size

    def encode(self, envelope: Envelope) -> bytes:
        document: dict[str, Any] = {
            "v": WIRE_VERSION,
            "id": envelope.id,
            "kind": envelope.kind.value,
            "name": envelope.name,
            "sender": envelope.sender,
            "payload": envelope.payload,
            "headers": envelope.headers,
            "correlation_id": envelope.correlation_id,
            "reply_to": envelope.reply_to,
            "sent_at": envelope.sent_at,
            "attempt": envelope.attempt,
        }
        return self._dump(document, envelope.name)

    def encode_value(self, value: Any) -> bytes:
        return self._dump(value, "value")

    def _dump(self, document: Any, name: str) -> bytes:
        try:
            data = orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS)
        except TypeError as exc:
            raise PayloadError(f"{name!r}: payload is not JSON-encodable: {exc}") from None
        if len(data) > self.max_size:
            raise PayloadTooLarge(
                f"{name!r}: encoded message is {len(data)} bytes, limit is {self.max_size}"
            )
        return data

    def decode_value(self, data: bytes) -> Any:
        if len(data) > self.max_size:
            raise DecodeError(f"message of {len(data)} bytes exceeds the limit of {self.max_size}")
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"not valid JSON: {exc}") from None

    def decode(self, data: bytes) -> Envelope:
        document = self.decode_value(data)
        if not isinstance(document, dict):
            raise DecodeError("an envelope must be a JSON object")
        return envelope_from_dict(document)


def _text(document: dict[str, Any], key: str, default: str | None) -> Any:
    value = document.get(key, default)
    if value is None and default is None:
        return None
    if not isinstance(value, str):
        raise DecodeError(f"envelope field {key!r} must be a string, got {type(value).__name__}")
    return value


def envelope_from_dict(document: dict[str, Any]) -> Envelope:
    """Validate a decoded envelope; only ``kind`` and ``name`` are required."""
    version = document.get("v", WIRE_VERSION)
    if version != WIRE_VERSION:
        raise DecodeError(f"unsupported wire version {version!r}")
    kind = _KINDS.get(document.get("kind"))  # type: ignore[arg-type]
    if kind is None:
        raise DecodeError(f"envelope field 'kind' must be one of {sorted(_KINDS)}")
    name = _text(document, "name", "")
    if not name:
        raise DecodeError("envelope field 'name' is required")
    headers = document.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise DecodeError("envelope field 'headers' must map strings to strings")
    attempt = document.get("attempt", 1)
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
        raise DecodeError("envelope field 'attempt' must be a positive integer")
    sent_at = document.get("sent_at", 0.0)
    if not isinstance(sent_at, int | float) or isinstance(sent_at, bool):
        raise DecodeError("envelope field 'sent_at' must be a number (Unix seconds)")
    fields: dict[str, Any] = {
        "kind": kind,
        "name": name,
        "payload": document.get("payload"),
        "sender": _text(document, "sender", ""),
        "headers": headers,
        "correlation_id": _text(document, "correlation_id", None),
        "reply_to": _text(document, "reply_to", None),
        "sent_at": float(sent_at),
        "attempt": attempt,
    }
    if "id" in document:
        fields["id"] = _text(document, "id", "")
    return Envelope(**fields)
