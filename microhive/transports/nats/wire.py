"""What microhive writes on NATS besides envelopes: header names, ack bodies, and the reading
of JetStream's reply subjects and header blocks (docs/transports/nats.md lists them)."""

from __future__ import annotations

MARKER = "Microhive"
"""Header on everything microhive stores in a queue (:mod:`.plain`): ``1`` when the body is
an encoded envelope, ``payload`` when it is the payload of a text or bytes queue."""
MARKER_ENVELOPE = "1"
MARKED: dict[str, str] = {MARKER: MARKER_ENVELOPE}
"""The headers of an ordinary send (shared: copied before anything is added)."""
MARKED_BLOCK = b"NATS/1.0\r\nMicrohive: 1\r\n\r\n"
"""The header block of an ordinary send, exactly as nats-py writes it."""
DUE = "Microhive-Due"
"""Header of a delayed message: when it may be handed out (Unix time in ms)."""
GROUP = "Microhive-Group"
"""Header of a retry: the durable consumer it is for (others skip it)."""
REASON = "Microhive-Reason"
ATTEMPT = "Microhive-Attempt"
QUEUE = "Microhive-Queue"
DEAD_AT = "Microhive-Dead-At"
MESSAGE_ID = "Microhive-Id"
SEQUENCE = "Microhive-Sequence"
DELIVERIES = "Microhive-Deliveries"
MSG_ID = "Nats-Msg-Id"
KEY = "x-key"
"""Header of a keyed send (also in the envelope's headers): keyed replay scans for it."""
PENDING_MESSAGES = "Nats-Pending-Messages"
STATUS = "Status"
DESCRIPTION = "Description"

ACK = b"+ACK"
NAK = b"-NAK"
IN_PROGRESS = b"+WPI"

_NS = 1_000_000_000


def ns(seconds: float) -> int:
    """JetStream durations are nanoseconds (at least 1)."""
    return max(1, round(seconds * _NS))


def header_text(text: str, limit: int = 2000) -> str:
    """Header values are one line of text."""
    return " ".join(text.split())[:limit]


def ack_metadata(reply: str) -> tuple[int, int, int] | None:
    """(times delivered, stream sequence, consumer sequence) from a JetStream reply subject:
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>``, or the newer
    form with ``<domain>.<account hash>`` after ``$JS.ACK`` (and a random token at the end).
    """
    parts = reply.split(".")
    offset = 0 if len(parts) == 9 else 2
    try:
        return int(parts[4 + offset]), int(parts[5 + offset]), int(parts[6 + offset])
    except (IndexError, ValueError):
        return None


def parse_headers(block: bytes) -> dict[str, str]:
    """A NATS header block (``NATS/1.0\\r\\nKey: value\\r\\n...``) as a dict."""
    headers: dict[str, str] = {}
    for line in block.decode(errors="replace").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep and name:
            headers.setdefault(name.strip(), value.strip())
    return headers


def to_int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def to_float(value: str | None, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


class Message:
    """A received message, as microhive needs it (lighter than nats-py's ``Msg``)."""

    __slots__ = ("data", "headers", "reply")

    def __init__(self, reply: bytes, data: bytes, headers: dict[str, str] | None) -> None:
        self.reply = reply
        self.data = data
        self.headers = headers
