"""``kafka://`` URLs: the bootstrap servers and microhive's options, and the topic names.

    kafka://host[:port][,host[:port]...][?option=value&...]

Unknown options are refused rather than ignored, so a typo never silently falls back to a
default. Credentials are refused too: SASL and TLS are not supported yet (see
docs/transports/kafka.md), and a password in a URL must never end up in a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from ...errors import ConfigurationError
from ...urls import number_option, redact
from ..links import CONNECT_TIMEOUT

DEFAULT_PORT = 9092

# option -> default (seconds unless said otherwise); see docs/transports/kafka.md
DEFAULTS: dict[str, float | str] = {
    "prefix": "microhive",  # topics <prefix>.queue.<name>, <prefix>.delay.<name>, ...dead...
    "group": "microhive",  # consumers of a queue in one group compete (<prefix>.group.<g>.<q>)
    "partitions": 3,  # partitions of a queue's topic when microhive creates it
    "replication": 1,  # replication factor of the topics microhive creates
    "acks": "all",  # producer acks: all (every in-sync replica) or 1 (the leader)
    "linger": 0.0,  # how long the producer waits to fill a batch
    "batch_size": 65536,  # bytes per partition batch
    "commit_interval": 0.5,  # commit at most this often while busy (at once when idle)
    "session_timeout": 10.0,  # a consumer silent this long leaves the group
    "heartbeat_interval": 3.0,  # group heartbeats (well below session_timeout)
    "rebalance_timeout": 0.0,  # how long a rebalance waits for members; 0 = session_timeout
    "max_poll_interval": 300.0,  # a consumer not polling this long leaves the group
    "delay_buffer": 10_000,  # delayed messages one process holds in memory until due
    "request_timeout": 30.0,  # one request to the cluster
    "connect_timeout": CONNECT_TIMEOUT,  # connect(): trying, retries included, then LinkDown
    "client_id": "microhive",  # shown in the cluster's logs and metrics
    "results": "",  # where tasks keep results: a redis:// or nats:// URL (docs/results.md)
}

_INTEGERS = {"partitions", "replication", "batch_size", "delay_buffer"}
_TEXTS = {"prefix", "group", "acks", "client_id", "results"}
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


@dataclass(frozen=True, slots=True)
class KafkaOptions:
    """A parsed ``kafka://`` URL."""

    url: str
    servers: tuple[str, ...] = ("127.0.0.1:9092",)
    prefix: str = "microhive"
    group: str = "microhive"
    partitions: int = 3
    replication: int = 1
    acks: str = "all"
    linger: float = 0.0
    batch_size: int = 65536
    commit_interval: float = 0.5
    session_timeout: float = 10.0
    heartbeat_interval: float = 3.0
    rebalance_timeout: float = 0.0
    max_poll_interval: float = 300.0
    delay_buffer: int = 10_000
    request_timeout: float = 30.0
    connect_timeout: float = CONNECT_TIMEOUT
    client_id: str = "microhive"
    results: str = ""
    addresses: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Queues declared with ``address=``: the topic they live on, verbatim (the broker fills
    it in as it meets them)."""

    @property
    def safe_url(self) -> str:
        return redact(self.url)

    @property
    def bootstrap(self) -> str:
        return ",".join(self.servers)

    # -- names -----------------------------------------------------------------------------

    def topic(self, queue: str) -> str:
        """The queue's topic: its ``address`` verbatim, else ``<prefix>.queue.<name>``."""
        return self.addresses.get(queue) or f"{self.prefix}.queue.{queue}"

    def delay_topic(self, queue: str) -> str:
        return f"{self.prefix}.delay.{queue}"

    def dead_topic(self, queue: str) -> str:
        return f"{self.prefix}.dead.{queue}"

    def group_id(self, queue: str) -> str:
        """The Kafka consumer group of ``queue``'s consumers: one per queue, so consumers of
        one queue joining or leaving never make those of another rebalance."""
        return f"{self.prefix}.group.{self.group}.{queue}"

    def delay_group(self, queue: str) -> str:
        """The group of the processes that move due delayed messages of ``queue``: one for
        every consumer group, so each delayed message is moved once."""
        return f"{self.prefix}.delay.{queue}"

    def done_group(self, queue: str) -> str:
        """The group whose committed offsets on the dead-letter topic say which dead letters
        were requeued or purged (:mod:`.deadwork`)."""
        return f"{self.prefix}.dead.{queue}"

    # -- client settings -------------------------------------------------------------------

    def common(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id,
            "request_timeout_ms": _ms(self.request_timeout),
        }

    def group_settings(self) -> dict[str, Any]:
        rebalance = self.rebalance_timeout or self.session_timeout
        return {
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": _ms(self.session_timeout),
            "heartbeat_interval_ms": _ms(self.heartbeat_interval),
            "rebalance_timeout_ms": _ms(rebalance),
            "max_poll_interval_ms": _ms(self.max_poll_interval),
        }

    @property
    def revoke_wait(self) -> float:
        """How long a consumer losing partitions waits for their handlers to finish, so it
        can commit them instead of leaving them to be processed again."""
        return min(5.0, (self.rebalance_timeout or self.session_timeout) / 2)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def parse(url: str) -> KafkaOptions:
    """Split ``url`` into bootstrap servers and microhive's options."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"not a Kafka URL: {redact(str(url))!r}")
    scheme, rest = url.split("://", 1)
    if scheme.lower() != "kafka":
        raise ConfigurationError(f"not a Kafka URL: {redact(url)!r} (kafka://host:port)")
    rest = rest.split("#", 1)[0]
    location, _, query = rest.partition("?")
    location = location.rstrip("/")
    if "@" in location:
        raise ConfigurationError(
            f"Kafka URL {redact(url)!r}: credentials are not supported (SASL and TLS are not "
            "implemented yet); use a listener without authentication on a trusted network"
        )
    if "/" in location:
        raise ConfigurationError(f"Kafka URL {redact(url)!r}: no path is allowed after the hosts")
    servers = _servers(url, location)
    given: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in DEFAULTS:
            raise ConfigurationError(
                f"unknown option {key!r} in Kafka URL {redact(url)!r} "
                f"(known: {', '.join(sorted(DEFAULTS))})"
            )
        given[key] = _option(url, key, value)
    options = KafkaOptions(url=url, servers=servers, **given)
    _check(options)
    return options


def _servers(url: str, location: str) -> tuple[str, ...]:
    servers = []
    for part in (location or "127.0.0.1").split(","):
        host = part.strip()
        if not host:
            raise ConfigurationError(f"Kafka URL {redact(url)!r}: an empty host in the list")
        port = str(DEFAULT_PORT)
        if host.startswith("["):  # [::1]:9092
            end = host.find("]")
            host, tail = host[: end + 1], host[end + 1 :]
            if tail.startswith(":"):
                port = tail[1:]
        elif ":" in host:
            host, port = host.rsplit(":", 1)
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(f"Kafka URL {redact(url)!r}: bad port {port!r}")
        servers.append(f"{host or '127.0.0.1'}:{int(port)}")
    return tuple(servers)


def _option(url: str, key: str, value: str) -> Any:
    if key in _TEXTS:
        return value
    return number_option(f"Kafka URL {redact(url)!r}", key, value, integer=key in _INTEGERS)


def _check(options: KafkaOptions) -> None:
    where = f"Kafka URL {options.safe_url!r}"
    for key in ("prefix", "group", "client_id"):
        if not _NAME.fullmatch(getattr(options, key)):
            raise ConfigurationError(
                f"{where}: option {key} must be 1 to 100 letters, digits, '.', '_' or '-'"
            )
    if options.acks not in ("all", "1"):
        raise ConfigurationError(f"{where}: option acks must be 'all' or '1'")
    for key in ("partitions", "replication", "batch_size", "delay_buffer"):
        if getattr(options, key) < 1:
            raise ConfigurationError(f"{where}: option {key} must be >= 1")
    positive = (
        "session_timeout",
        "heartbeat_interval",
        "max_poll_interval",
        "request_timeout",
        "connect_timeout",
    )
    for key in positive:
        if getattr(options, key) <= 0:
            raise ConfigurationError(f"{where}: option {key} must be > 0")
    if options.heartbeat_interval >= options.session_timeout:
        raise ConfigurationError(
            f"{where}: heartbeat_interval must be below session_timeout (a third of it is usual)"
        )
