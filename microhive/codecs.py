"""Codecs turn envelopes into bytes and back. JSON (orjson) is the default.

See docs/wire-format.md: the JSON form is what non-Python services read and write.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Protocol

import msgspec
import orjson

from .envelope import Envelope, Kind, new_id
from .errors import DecodeError, PayloadError, PayloadTooLarge

DEFAULT_MAX_SIZE = 4 * 1024 * 1024
WIRE_VERSION = 1
MAX_ATTEMPT = 2**63 - 1
"""An attempt beyond a signed 64-bit integer is refused: AMQP headers cannot carry it."""
_KINDS = {kind.value: kind for kind in Kind}


class Codec(Protocol):
    """What a transport needs to put envelopes on the wire.

    ``decode`` and ``decode_value`` may raise only :class:`DecodeError` for bad bytes: a
    transport dead-letters on it and goes on. Brokers and buses wrap a codec that is not
    microhive's own in :func:`guarded`, so a bug in a user's codec cannot stop a consumer.
    """

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
            "kind": envelope.kind,  # a StrEnum: orjson writes its value
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
            data = _dump_big_integers(document, name, exc)
        if len(data) > self.max_size:
            raise PayloadTooLarge(
                f"{name!r}: encoded message is {len(data)} bytes, limit is {self.max_size}"
            )
        return data

    def decode_value(self, data: bytes) -> Any:
        if len(data) > self.max_size:
            raise DecodeError(f"message of {len(data)} bytes exceeds the limit of {self.max_size}")
        return _loads(data)

    def decode(self, data: bytes) -> Envelope:
        if len(data) > self.max_size:
            raise DecodeError(f"message of {len(data)} bytes exceeds the limit of {self.max_size}")
        try:  # msgspec checks the envelope's shape in C and parses the payload
            wire = _WIRE.decode(data)
            payload = _ANY.decode(wire.payload)
        except (msgspec.DecodeError, RecursionError):
            return self._decode_checked(data)
        message_id = wire.id
        headers = wire.headers
        return Envelope(
            wire.kind,
            wire.name,
            payload,
            wire.sender or "",
            new_id() if message_id is None else message_id,
            {} if headers is None else headers,
            wire.correlation_id,
            wire.reply_to,
            wire.sent_at,
            wire.attempt,
        )

    def _decode_checked(self, data: bytes) -> Envelope:
        """The field-by-field path: says exactly what is wrong with a bad envelope."""
        document = _loads(data)
        if type(document) is not dict:
            raise DecodeError("an envelope must be a JSON object")
        return envelope_from_dict(document)


class GuardedCodec:
    """A codec whose decoding failures of any kind come out as :class:`DecodeError`.

    What a foreign producer sends is outside our control, and so is a user's codec: an
    ``IndexError`` or ``RecursionError`` from one message must not reach a transport's read
    loop, where it would drop a batch or kill a connection instead of dead-lettering.
    """

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.content_type = codec.content_type
        self.max_size = codec.max_size
        self.encode = codec.encode
        self.encode_value = codec.encode_value

    def __repr__(self) -> str:
        return f"guarded({self.codec!r})"

    def decode(self, data: bytes) -> Envelope:
        try:
            return self.codec.decode(data)
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"codec failed: {type(exc).__name__}: {exc}") from None

    def decode_value(self, data: bytes) -> Any:
        try:
            return self.codec.decode_value(data)
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"codec failed: {type(exc).__name__}: {exc}") from None


def guarded(codec: Codec | None) -> Codec:
    """``codec`` (JSON when None) with the decode contract enforced; JsonCodec keeps it itself."""
    if codec is None:
        return JsonCodec()
    if type(codec) is JsonCodec or isinstance(codec, GuardedCodec):
        return codec
    return GuardedCodec(codec)


class _Wire(msgspec.Struct, gc=False):
    """The envelope's shape as the fast path checks it; :func:`envelope_from_dict` is the
    reference (anything this refuses is decoded again by it, for the exact reason)."""

    kind: Kind
    name: Annotated[str, msgspec.Meta(min_length=1)]
    v: Literal[1] = 1
    payload: msgspec.Raw = msgspec.Raw(b"null")
    sender: str | None = ""
    id: str | None = None
    headers: dict[str, str] | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    sent_at: float = 0.0
    attempt: Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPT)] = 1


_WIRE = msgspec.json.Decoder(_Wire)
_ANY = msgspec.json.Decoder()
"""Payloads are parsed by msgspec: as fast as orjson here, and an integer beyond 64 bits stays
the integer it was (orjson would turn it into a float, silently changing its value)."""


def _loads(data: bytes | memoryview) -> Any:
    """Any JSON document; every failure, deep nesting included, is a :class:`DecodeError`."""
    try:
        return _ANY.decode(data)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise DecodeError("not valid JSON: nested too deeply") from None


def _dump_big_integers(document: Any, name: str, error: TypeError) -> bytes:
    """orjson refuses integers beyond 64 bits; they are written exactly, as JSON allows.

    Only that refusal takes this slower path, which gives every such integer to orjson as a
    ready-made fragment; anything else JSON cannot carry is refused as before.
    """
    try:
        if "64-bit" not in str(error):
            raise error
        return orjson.dumps(_with_fragments(document), option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise PayloadError(f"{name!r}: payload is not JSON-encodable: {exc}") from None


def _with_fragments(value: Any) -> Any:
    if type(value) is int and not -(2**63) <= value < 2**64:
        return orjson.Fragment(str(value).encode())
    if isinstance(value, dict):
        return {key: _with_fragments(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_with_fragments(item) for item in value]
    return value


def _fail(key: str, expected: str, value: Any) -> DecodeError:
    return DecodeError(f"envelope field {key!r} must be {expected}, got {type(value).__name__}")


def envelope_from_dict(document: dict[str, Any]) -> Envelope:
    """Validate a decoded envelope; only ``kind`` and ``name`` are required.

    Written for the common case (a well-formed document) to cost little: this runs for
    every message received.
    """
    get = document.get
    version = get("v", WIRE_VERSION)
    if version != WIRE_VERSION or type(version) is not int:
        raise DecodeError(f"unsupported wire version {version!r}")
    kind_name = get("kind")
    kind = _KINDS.get(kind_name) if type(kind_name) is str else None
    if kind is None:
        raise DecodeError(f"envelope field 'kind' must be one of {sorted(_KINDS)}")
    name = get("name")
    if type(name) is not str or not name:
        raise DecodeError("envelope field 'name' is required (a non-empty string)")
    sender = get("sender")
    if type(sender) is not str:
        if sender is not None:
            raise _fail("sender", "a string", sender)
        sender = ""
    headers = get("headers")
    if not headers:
        if headers is not None and headers != {}:
            raise DecodeError("envelope field 'headers' must map strings to strings")
        headers = {}
    elif type(headers) is not dict or not all(
        type(k) is str and type(v) is str for k, v in headers.items()
    ):
        raise DecodeError("envelope field 'headers' must map strings to strings")
    attempt = get("attempt", 1)
    if type(attempt) is not int or not 1 <= attempt <= MAX_ATTEMPT:
        raise _fail("attempt", "a positive 64-bit integer", attempt)
    sent_at = get("sent_at", 0.0)
    if type(sent_at) is not float:
        if type(sent_at) is not int:
            raise _fail("sent_at", "a number (Unix seconds)", sent_at)
        try:
            sent_at = float(sent_at)
        except OverflowError:  # JSON integers have no limit; a float has
            raise DecodeError("envelope field 'sent_at' is out of range") from None
    message_id = get("id")
    if type(message_id) is not str:
        if message_id is not None:
            raise _fail("id", "a string", message_id)
        message_id = new_id()
    correlation_id = get("correlation_id")
    if correlation_id is not None and type(correlation_id) is not str:
        raise _fail("correlation_id", "a string", correlation_id)
    reply_to = get("reply_to")
    if reply_to is not None and type(reply_to) is not str:
        raise _fail("reply_to", "a string", reply_to)
    return Envelope(
        kind,
        name,
        get("payload"),
        sender,
        message_id,
        headers,
        correlation_id,
        reply_to,
        sent_at,
        attempt,
    )
