"""Redis URLs: microhive's own query options, key and channel names, where to connect.

- ``redis://`` and ``rediss://`` (TLS): one server over TCP.
- ``redis+unix:///path/to/redis.sock?db=0``: one server over a Unix socket.
- ``redis+sentinel://host:port[,host:port...]/<master>[/db]``: the master that the listed
  Sentinels name; after a failover the links reconnect to the new master.

Everything in the query string that is not one of :data:`DEFAULTS` goes to redis-py's
connection (``ssl_ca_certs``, ``socket_connect_timeout``, ``socket_keepalive``...). The
password is used to connect and nowhere else: messages only ever show :func:`redact`-ed URLs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from ...errors import ConfigurationError
from ...urls import number_option, redact
from ..links import CONNECT_TIMEOUT

DEFAULT_PREFIX = "microhive:"
DEFAULT_GROUP = "microhive"
SENTINEL_PORT = 26379
SCHEMES = ("redis", "rediss", "redis+unix", "redis+sentinel")

# option -> default (seconds unless said otherwise); see docs/transports/redis.md
DEFAULTS: dict[str, float | str] = {
    "prefix": DEFAULT_PREFIX,
    "group": DEFAULT_GROUP,  # consumers in one group compete; another group gets every message
    "claim_idle": 30.0,  # reclaim entries a dead consumer left pending after this long
    "claim_interval": 1.0,  # how often consumers look for such entries (capped at claim_idle/2)
    "block": 1.0,  # XREADGROUP BLOCK
    "delay_poll": 0.25,  # how often consumers look for due delayed messages from elsewhere
    "trim_interval": 10.0,  # how often consumers trim entries every group acknowledged; 0 = never
    "maxlen": 0,  # XADD MAXLEN ~ N: a hard cap on stream length that can drop messages; 0 = off
    "dead_maxlen": 0,  # cap on each dead-letter stream (XADD MAXLEN ~ N); 0 = keep all
    "max_deliver": 20,  # dead-letter an entry reclaimed after this many unsettled deliveries
    "retry_timeout": 30.0,  # how long sends, acks and reconnects retry through an outage
    "command_timeout": 10.0,  # a reply slower than this breaks (and reconnects) the connection
    "connect_timeout": CONNECT_TIMEOUT,  # how long connect() keeps trying before LinkDown
    "results": "",  # tasks keep results elsewhere: a redis:// or nats:// URL (docs/results.md)
}

_INTEGERS = {"maxlen", "dead_maxlen", "max_deliver"}
_SECRETS = {"password", "ssl_password"}

# keyword arguments of redis-py's Connection / SSLConnection / UnixDomainSocketConnection
# that a URL may set
_CONNECTION_ARGS = {
    "db",
    "username",
    "password",
    "host",
    "port",
    "path",
    "socket_connect_timeout",
    "socket_keepalive",
    "socket_read_size",
    "client_name",
    "ssl_keyfile",
    "ssl_certfile",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_ca_data",
    "ssl_check_hostname",
    "ssl_min_version",
    "ssl_ciphers",
}


@dataclass(frozen=True)
class RedisOptions:
    """A parsed URL: where to connect and how the transport behaves."""

    url: str
    prefix: str = DEFAULT_PREFIX
    group: str = DEFAULT_GROUP
    claim_idle: float = 30.0
    claim_interval: float = 1.0
    block: float = 1.0
    delay_poll: float = 0.25
    trim_interval: float = 10.0
    maxlen: int = 0
    dead_maxlen: int = 0
    max_deliver: int = 20
    retry_timeout: float = 30.0
    command_timeout: float = 10.0
    connect_timeout: float = CONNECT_TIMEOUT
    results: str = ""
    master: str = ""  # redis+sentinel://: the name of the monitored master
    sentinels: tuple[tuple[str, int], ...] = ()  # redis+sentinel://: where to ask for it
    connection: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def safe_url(self) -> str:
        return redact(self.url)

    # -- names ---------------------------------------------------------------------------

    def signal_channel(self, signal: str) -> str:
        return f"{self.prefix}signal:{signal}"

    def stream(self, queue: str) -> str:
        return f"{self.prefix}queue:{queue}"

    def delayed(self, queue: str) -> str:
        return f"{self.prefix}queue:{queue}:delayed"

    def retries(self, queue: str, group: str) -> str:
        return f"{self.prefix}queue:{queue}:retry:{group}"

    def dead(self, queue: str) -> str:
        return f"{self.prefix}queue:{queue}:dead"

    def consumers(self, queue: str, group: str) -> str:
        """The sorted set of a group's live consumers (name -> last seen, Unix time)."""
        return f"{self.prefix}queue:{queue}:consumers:{group}"

    @property
    def claim_every(self) -> float:
        return max(0.01, min(self.claim_interval, self.claim_idle / 2))


def parse(url: str) -> RedisOptions:
    """Split ``url`` into microhive's options and redis-py's connection arguments."""
    from redis.asyncio.connection import Connection, SSLConnection, parse_url

    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigurationError(f"invalid Redis URL {redact(url)!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigurationError(f"not a Redis URL: {redact(url)!r}")
    ours: dict[str, Any] = {}
    theirs = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _SECRETS:  # redact() only hides the password of the user info part
            raise ConfigurationError(
                f"a Redis URL must not carry {key!r} in its query string: put the password "
                "in the user info (redis://user:password@host:port/db)"
            )
        if key in DEFAULTS:
            ours[key] = _option(url, key, value)
        else:
            theirs.append((key, value))
    if scheme == "redis+sentinel":
        ours["master"], ours["sentinels"], parts = _sentinel(url, parts)
    # by hand: urlunsplit drops the "//" of an empty host, and redis-py then refuses the URL
    query = urlencode(theirs)
    bare = f"{'unix' if scheme == 'redis+unix' else parts.scheme}://{parts.netloc}{parts.path}"
    bare += f"?{query}" if query else ""
    try:
        connection: dict[str, Any] = dict(parse_url(bare))
    except ValueError as exc:
        raise ConfigurationError(f"bad Redis URL {redact(url)!r}: {exc}") from None
    unknown = sorted(set(connection) - _CONNECTION_ARGS - {"connection_class"})
    if unknown:
        known = sorted(set(DEFAULTS) | _CONNECTION_ARGS - {"host", "port", "username", "password"})
        raise ConfigurationError(
            f"unknown option(s) {unknown} in Redis URL {redact(url)!r} (known: {', '.join(known)})"
        )
    if scheme == "redis+unix":
        if not connection.get("path"):
            raise ConfigurationError(f"Redis URL {redact(url)!r}: no socket path")
    else:
        connection["connection_class"] = SSLConnection if scheme == "rediss" else Connection
        connection.setdefault("host", "127.0.0.1")
        connection.setdefault("socket_keepalive", True)
    connection.setdefault("socket_connect_timeout", 5.0)
    connection["socket_timeout"] = None  # reply deadlines are the link's own (command_timeout)
    connection["protocol"] = 2
    options = RedisOptions(url=url, connection=connection, **ours)
    if options.claim_idle <= 0 or options.block <= 0 or options.command_timeout <= 0:
        raise ConfigurationError(
            f"Redis URL {redact(url)!r}: claim_idle, block and command_timeout must be > 0"
        )
    return options


def _sentinel(url: str, parts: Any) -> tuple[str, tuple[tuple[str, int], ...], Any]:
    """``redis+sentinel://[user:password@]host:port,host:port/<master>[/db]``: the master's
    name, the Sentinels, and the URL left for the master's connection (host set at dial)."""
    user_info, _, hosts = parts.netloc.rpartition("@")
    sentinels = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not port.isdigit():
            host, port = item.strip(), str(SENTINEL_PORT)
        if not host:
            raise ConfigurationError(f"Redis URL {redact(url)!r}: empty Sentinel address")
        sentinels.append((host.strip("[]"), int(port)))
    master, _, db = parts.path.strip("/").partition("/")
    if not master:
        raise ConfigurationError(
            f"Redis URL {redact(url)!r}: name the master, redis+sentinel://host:port/<master>"
        )
    netloc = f"{user_info}@placeholder" if user_info else "placeholder"
    rest = parts._replace(scheme="redis", netloc=netloc, path=f"/{db}" if db else "")
    return unquote(master), tuple(sentinels), rest


def _option(url: str, key: str, value: str) -> Any:
    if key in ("prefix", "group", "results"):
        if key == "group" and not value:
            raise ConfigurationError(f"Redis URL {redact(url)!r}: option group must not be empty")
        return value
    return number_option(f"Redis URL {redact(url)!r}", key, value, integer=key in _INTEGERS)


def consumer_name(name: str, fallback: str) -> str:
    """The consumer's name in its group: the agent instance id (``"Worker.ab12cd34"``)."""
    return name or fallback
