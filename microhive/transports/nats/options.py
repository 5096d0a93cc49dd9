"""``nats://`` and ``tls://`` URLs: where to connect, microhive's options, subject and stream names.

    nats://[user:password@ | token@]host[:port][,host2[:port2]...][?option=value&...]
    tls://...                      the same over TLS (or any ``tls_*`` option)

Credentials are taken from the user info (user and password, or a token alone) or from files
(``creds=``, ``nkey=``); the query string must not carry a secret. Only :attr:`NatsOptions.
safe_url` is ever shown: it hides the password and a token. See docs/transports/nats.md.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from ...errors import ConfigurationError
from ...urls import number_option, redact
from ..links import CONNECT_TIMEOUT

DEFAULT_PREFIX = "microhive"
DEFAULT_DURABLE = "microhive"
DEFAULT_PORT = 4222

# option -> default (seconds unless said otherwise); see docs/transports/nats.md
DEFAULTS: dict[str, float | str | bool] = {
    "prefix": DEFAULT_PREFIX,  # subjects <prefix>.signal.<name>...; streams <prefix>_queue_<name>
    "durable": DEFAULT_DURABLE,  # every consumer of a queue shares this durable consumer
    "ack_wait": 30.0,  # redelivery after this long without an ack (in-progress acks extend it)
    "expires": 5.0,  # how long one pull request waits on the server
    "max_deliver": 20,  # dead-letter a message delivered this often unsettled; 0 = never
    "history": 10_000,  # acknowledged messages kept per queue for tail(); 0 = none
    "trim_interval": 10.0,  # how often consumers purge what is acknowledged beyond history
    "storage": "file",  # JetStream storage of the streams: file or memory
    "replicas": 1,  # stream replicas (a cluster)
    "dedup": False,  # a Nats-Msg-Id on every send: a retried publish is stored once
    "duplicate_window": 120.0,  # the streams' de-duplication window (with dedup)
    "retry_timeout": 30.0,  # how long sends and settlements retry through an outage
    "request_timeout": 5.0,  # how long to wait for one acknowledgement or API answer
    "connect_timeout": CONNECT_TIMEOUT,  # how long connect() keeps trying, retries included
    "reconnect_wait": 2.0,  # the longest pause between reconnection attempts
    "ping_interval": 10.0,  # a dead server is noticed after about 3 of these
    "name": "",  # the connection name shown by the server's monitoring
    "creds": "",  # a .creds file (JWT and NKey seed)
    "nkey": "",  # a file with an NKey seed
    "tls_ca": "",  # CA certificate(s) to verify the server
    "tls_cert": "",  # client certificate (mutual TLS)
    "tls_key": "",  # its key
    "tls_hostname": "",  # the name to verify the server certificate against
    "tls_verify": True,  # false: no certificate verification (tests only)
    "results": "",  # tasks keep results elsewhere: a redis:// or nats:// URL (docs/results.md)
}

_INTEGERS = {"max_deliver", "history", "replicas"}
_BOOLEANS = {"dedup", "tls_verify"}
_TEXTS = {"prefix", "durable", "storage", "name", "creds", "nkey", "results"} | {
    "tls_ca",
    "tls_cert",
    "tls_key",
    "tls_hostname",
}
_SECRETS = {"password", "pass", "token", "auth_token", "user_password", "seed"}
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def safe(url: str) -> str:
    """``url`` without its password, and without a token (user info without a colon): any
    user info is a secret here, whatever scheme a caller wrote."""
    text = redact(url)
    scheme_end = text.find("://")
    start = scheme_end + 3 if scheme_end >= 0 else 0
    at = text.rfind("@")
    if at >= start and ":" not in text[start:at]:
        return f"{text[:start]}***{text[at:]}"
    return text


@dataclass(frozen=True)
class NatsOptions:
    """A parsed URL: the servers, the credentials (hidden from repr) and the behaviour."""

    url: str
    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    tls: bool = False
    prefix: str = DEFAULT_PREFIX
    durable: str = DEFAULT_DURABLE
    ack_wait: float = 30.0
    expires: float = 5.0
    max_deliver: int = 20
    history: int = 10_000
    trim_interval: float = 10.0
    storage: str = "file"
    replicas: int = 1
    dedup: bool = False
    duplicate_window: float = 120.0
    retry_timeout: float = 30.0
    request_timeout: float = 5.0
    connect_timeout: float = CONNECT_TIMEOUT
    reconnect_wait: float = 2.0
    ping_interval: float = 10.0
    name: str = ""
    creds: str = ""
    nkey: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_hostname: str = ""
    tls_verify: bool = True
    results: str = ""
    user: str | None = field(default=None, repr=False, compare=False)
    password: str | None = field(default=None, repr=False, compare=False)
    token: str | None = field(default=None, repr=False, compare=False)

    @property
    def safe_url(self) -> str:
        return safe(self.url)

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never appear in a message (checked by :meth:`scrub`)."""
        return tuple(s for s in (self.password, self.token) if s)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    # -- names -----------------------------------------------------------------------------

    def signal_subject(self, signal: str) -> str:
        return f"{self.prefix}.signal.{signal}"

    def queue_subject(self, queue: str) -> str:
        return f"{self.prefix}.queue.{queue}"

    def retry_subject(self, queue: str) -> str:
        return f"{self.prefix}.retry.{queue}"

    def dead_subject(self, queue: str) -> str:
        return f"{self.prefix}.dead.{queue}"

    def stream(self, queue: str) -> str:
        """The stream of a queue: a name may not hold dots, so they become underscores."""
        return f"{self.prefix}_queue_{queue.replace('.', '_')}"

    def dead_stream(self, queue: str) -> str:
        return f"{self.prefix}_dead_{queue.replace('.', '_')}"

    # -- connecting ------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.tls_ca or None)
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key or None)
        if not self.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def parse(url: str) -> NatsOptions:
    """Split ``url`` into servers, credentials and microhive's options."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"not a NATS URL: {safe(str(url))!r}")
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme not in ("nats", "tls"):
        raise ConfigurationError(f"not a NATS URL: {safe(url)!r} (nats:// or tls://)")
    if "#" in rest:
        rest = rest.split("#", 1)[0]
    location, _, query = rest.partition("?")
    location = location.rstrip("/")
    if "/" in location:
        raise ConfigurationError(f"NATS URL {safe(url)!r}: no path is allowed after the servers")
    user = password = token = None
    if "@" in location:
        userinfo, location = location.rsplit("@", 1)
        if ":" in userinfo:
            raw_user, raw_password = userinfo.split(":", 1)
            user, password = unquote(raw_user), unquote(raw_password)
        elif userinfo:
            token = unquote(userinfo)
    servers = _servers(url, location, "tls" if scheme == "tls" else "nats")
    ours: dict[str, Any] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    except ValueError:
        raise ConfigurationError(f"bad query string in NATS URL {safe(url)!r}") from None
    for key, value in pairs:
        if key in _SECRETS:
            raise ConfigurationError(
                f"a NATS URL must not carry {key!r} in its query string: put the password or "
                "token in the user info (nats://user:password@host or nats://token@host), or "
                "use creds= / nkey= files"
            )
        if key not in DEFAULTS:
            raise ConfigurationError(
                f"unknown option {key!r} in NATS URL {safe(url)!r} "
                f"(known: {', '.join(sorted(DEFAULTS))})"
            )
        ours[key] = _option(url, key, value)
    tls = scheme == "tls" or any(ours.get(k) for k in ("tls_ca", "tls_cert", "tls_hostname"))
    options = NatsOptions(
        url=url,
        servers=servers,
        tls=tls,
        user=user,
        password=password,
        token=token,
        **ours,
    )
    _check(options)
    return options


def _servers(url: str, location: str, scheme: str) -> tuple[str, ...]:
    servers = []
    for part in (location or "127.0.0.1").split(","):
        host, port = part.strip(), DEFAULT_PORT
        if not host:
            raise ConfigurationError(f"NATS URL {safe(url)!r}: an empty server in the list")
        if host.startswith("["):  # [::1]:4222
            end = host.find("]")
            tail = host[end + 1 :]
            host = host[: end + 1]
            if tail.startswith(":"):
                port = _port(url, tail[1:])
        elif ":" in host:
            host, raw = host.rsplit(":", 1)
            port = _port(url, raw)
        servers.append(f"{scheme}://{host or '127.0.0.1'}:{port}")
    return tuple(servers)


def _port(url: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigurationError(f"NATS URL {safe(url)!r}: bad port {raw!r}")
    return int(raw)


def _option(url: str, key: str, value: str) -> Any:
    if key in _TEXTS:
        return value
    if key in _BOOLEANS:
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigurationError(
            f"NATS URL {safe(url)!r}: option {key}={value!r} must be true or false"
        )
    return number_option(f"NATS URL {safe(url)!r}", key, value, integer=key in _INTEGERS)


def _check(options: NatsOptions) -> None:
    where = f"NATS URL {options.safe_url!r}"
    for key in ("prefix", "durable"):
        value = getattr(options, key)
        if not _TOKEN.fullmatch(value):
            raise ConfigurationError(
                f"{where}: option {key}={value!r} must be 1 to 64 letters, digits, '_' or '-'"
            )
    positive = ("ack_wait", "expires", "request_timeout", "connect_timeout", "ping_interval")
    for key in positive:
        if getattr(options, key) <= 0:
            raise ConfigurationError(f"{where}: option {key} must be > 0")
    if options.expires < 0.2:
        raise ConfigurationError(f"{where}: option expires must be at least 0.2 s")
    if options.storage not in ("file", "memory"):
        raise ConfigurationError(f"{where}: option storage must be 'file' or 'memory'")
    if options.replicas < 1:
        raise ConfigurationError(f"{where}: option replicas must be >= 1")
    if options.tls_key and not options.tls_cert:
        raise ConfigurationError(f"{where}: option tls_key needs tls_cert")


def consumer_name(name: str, fallback: str) -> str:
    """The name a consumer shows in logs: the agent instance id (``"Worker.ab12cd34"``)."""
    return name or fallback
