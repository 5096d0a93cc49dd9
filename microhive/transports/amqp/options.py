"""``amqp://`` and ``amqps://`` URLs: microhive's own query options and the names it declares.

Everything in the query string that is not one of :data:`DEFAULTS` goes to aiormq
(``heartbeat``, ``cafile``, ``certfile``, ``keyfile``, ``no_verify_ssl``, ``name``...);
``name`` is also the connection name RabbitMQ shows (client property ``connection_name``,
``microhive`` when not given). The password is used to connect and nowhere else: messages
only show :func:`redact`-ed URLs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ...errors import ConfigurationError
from ...urls import number_option, redact
from ..links import CONNECT_TIMEOUT

OVERFLOW_POLICIES = ("drop-head", "reject-publish", "reject-publish-dlx")
QUEUE_TYPES = ("classic", "quorum")
DECLARATIONS = ("plain", "arguments")

# option -> default; see docs/transports/amqp.md
DEFAULTS: dict[str, float | str] = {
    "prefix": "",  # put before every queue and exchange name microhive declares
    "retry_timeout": 30.0,  # how long a send waits for a lost connection to come back (s)
    "confirm_window": 2048,  # unconfirmed publishes in flight per connection
    "max_length": 0,  # x-max-length of every queue (0: no limit)
    "max_length_bytes": 0,  # x-max-length-bytes of every queue (0: no limit)
    "overflow": "drop-head",  # x-overflow: what a full queue does
    "queue_type": "classic",  # x-queue-type of work and dead-letter queues
    "declare": "plain",  # work queues as plain clients declare them, or "arguments" (a DLX)
    "connect_timeout": CONNECT_TIMEOUT,  # how long connect() keeps trying, in all (s)
    "results": "",  # where tasks keep results: a redis:// or nats:// URL (docs/results.md)
}

_INTEGERS = {"confirm_window", "max_length", "max_length_bytes"}
_TEXT = {"prefix", "overflow", "queue_type", "declare", "results"}
_AIORMQ = {
    "heartbeat",
    "name",
    "cafile",
    "capath",
    "cadata",
    "keyfile",
    "certfile",
    "no_verify_ssl",
    "channel_max",
    "frame_max",
    "auth",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """A queue's length limit and what happens when it is reached (RabbitMQ's own policy).

    ``overflow``: ``"drop-head"`` dead-letters the oldest message, ``"reject-publish"`` makes
    the sender's ``send`` raise :class:`QueueFull`, ``"reject-publish-dlx"`` does both.
    """

    max_length: int = 0
    max_length_bytes: int = 0
    overflow: str = "drop-head"

    def __post_init__(self) -> None:
        if self.overflow not in OVERFLOW_POLICIES:
            raise ConfigurationError(
                f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}, not {self.overflow!r}"
            )
        for name in ("max_length", "max_length_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ConfigurationError(f"{name} must be an integer >= 0, not {value!r}")

    def arguments(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.max_length:
            found["x-max-length"] = self.max_length
        if self.max_length_bytes:
            found["x-max-length-bytes"] = self.max_length_bytes
        if found:
            found["x-overflow"] = self.overflow
        return found


@dataclass(frozen=True)
class AmqpOptions:
    """A parsed URL: where to connect (``connection_url``) and how the transport behaves."""

    url: str
    connection_url: str
    prefix: str = ""
    retry_timeout: float = 30.0
    confirm_window: int = 2048
    max_length: int = 0
    max_length_bytes: int = 0
    overflow: str = "drop-head"
    queue_type: str = "classic"
    declare: str = "plain"
    connect_timeout: float = CONNECT_TIMEOUT
    connection_name: str = "microhive"
    results: str = ""

    @property
    def safe_url(self) -> str:
        return redact(self.url)

    @property
    def limits(self) -> Limits:
        return Limits(self.max_length, self.max_length_bytes, self.overflow)

    # -- names ---------------------------------------------------------------------------
    # microhive's names use ':' which declared names cannot contain, so they never collide

    def queue(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def dead(self, name: str) -> str:
        return f"{self.prefix}{name}:dead"

    def delay(self, name: str, milliseconds: int) -> str:
        return f"{self.prefix}{name}:delay:{milliseconds}"

    def exchange(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def signals_exchange(self) -> str:
        return f"{self.prefix}microhive:signals"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}microhive:dead-letter"

    def bus_queue(self, bus_id: str) -> str:
        return f"{self.prefix}microhive:bus:{bus_id}"


def parse(url: str) -> AmqpOptions:
    """Split ``url`` into microhive's options and the URL aiormq connects to."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port raises here, not later
    except ValueError:
        raise ConfigurationError(f"invalid AMQP URL {redact(url)!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("amqp", "amqps"):
        raise ConfigurationError(f"not an AMQP URL: {redact(url)!r}")
    ours: dict[str, Any] = {}
    theirs = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in DEFAULTS:
            ours[key] = _option(url, key, value)
        elif key in _AIORMQ:
            theirs.append((key, value))
            if key == "name" and value:
                ours["connection_name"] = value
        else:
            known = ", ".join(sorted(set(DEFAULTS) | _AIORMQ))
            raise ConfigurationError(
                f"unknown option {key!r} in AMQP URL {redact(url)!r} (known: {known})"
            )
    netloc = parts.netloc or "127.0.0.1"
    if netloc.startswith("@") or netloc.endswith(":"):
        raise ConfigurationError(f"AMQP URL {redact(url)!r} has no host")
    connection_url = urlunsplit((scheme, netloc, parts.path, urlencode(theirs), ""))
    options = AmqpOptions(url=url, connection_url=connection_url, **ours)
    if options.confirm_window < 1:
        raise ConfigurationError(f"AMQP URL {redact(url)!r}: confirm_window must be >= 1")
    if options.connect_timeout <= 0:
        raise ConfigurationError(f"AMQP URL {redact(url)!r}: connect_timeout must be > 0")
    if options.overflow not in OVERFLOW_POLICIES:
        raise ConfigurationError(
            f"AMQP URL {redact(url)!r}: overflow must be one of {', '.join(OVERFLOW_POLICIES)}"
        )
    if options.queue_type not in QUEUE_TYPES:
        raise ConfigurationError(
            f"AMQP URL {redact(url)!r}: queue_type must be one of {', '.join(QUEUE_TYPES)}"
        )
    if options.declare not in DECLARATIONS:
        raise ConfigurationError(
            f"AMQP URL {redact(url)!r}: declare must be one of {', '.join(DECLARATIONS)}"
        )
    return options


def _option(url: str, key: str, value: str) -> Any:
    if key in _TEXT:
        return value
    return number_option(f"AMQP URL {redact(url)!r}", key, value, integer=key in _INTEGERS)


def delay_bucket(seconds: float) -> int:
    """``seconds`` in whole milliseconds, rounded *up* to two significant digits.

    Each distinct delay needs a queue of its own (a queue-wide TTL keeps expiry in order),
    so delays are bucketed: a message is never due earlier than asked, and at most 10% later.
    """
    milliseconds = max(1, math.ceil(round(seconds * 1000, 6)))
    if milliseconds < 100:
        return milliseconds
    step: int = 10 ** (len(str(milliseconds)) - 2)
    return -(-milliseconds // step) * step
