"""Choosing a transport by URL scheme, and keeping passwords out of logs."""

from __future__ import annotations

import importlib
import math
import re
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import quote, unquote

from .errors import ConfigurationError

Role = Literal["bus", "broker"]

# scheme -> "module:Class". Immutable: a transport is added by adding a line here.
_TRANSPORTS: MappingProxyType[str, MappingProxyType[str, str]] = MappingProxyType(
    {
        "bus": MappingProxyType(
            {
                "memory": "microhive.transports.memory:MemoryBus",
                "redis": "microhive.transports.redis:RedisBus",
                "rediss": "microhive.transports.redis:RedisBus",
                "redis+unix": "microhive.transports.redis:RedisBus",
                "redis+sentinel": "microhive.transports.redis:RedisBus",
                "amqp": "microhive.transports.amqp:AmqpBus",
                "amqps": "microhive.transports.amqp:AmqpBus",
                "nats": "microhive.transports.nats:NatsBus",
                "tls": "microhive.transports.nats:NatsBus",
                # no bus on Kafka: constructing it raises ConfigurationError with advice
                "kafka": "microhive.transports.kafka.bus:KafkaBus",
            }
        ),
        "broker": MappingProxyType(
            {
                "memory": "microhive.transports.memory:MemoryBroker",
                "redis": "microhive.transports.redis:RedisBroker",
                "rediss": "microhive.transports.redis:RedisBroker",
                "redis+unix": "microhive.transports.redis:RedisBroker",
                "redis+sentinel": "microhive.transports.redis:RedisBroker",
                "amqp": "microhive.transports.amqp:AmqpBroker",
                "amqps": "microhive.transports.amqp:AmqpBroker",
                "nats": "microhive.transports.nats:NatsBroker",
                "tls": "microhive.transports.nats:NatsBroker",
                "kafka": "microhive.transports.kafka:KafkaBroker",
            }
        ),
    }
)


def scheme_of(url: str) -> str:
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"not a transport URL: {redact(str(url))!r} (expected scheme://...)"
        )
    return url.split("://", 1)[0].lower()


def supported_schemes(role: Role) -> list[str]:
    return sorted(_TRANSPORTS[role])


def resolve(url: str, role: Role) -> Any:
    """The transport class for ``url``; a clear error for an unknown scheme."""
    scheme = scheme_of(url)
    target = _TRANSPORTS[role].get(scheme)
    if target is None:
        raise ConfigurationError(
            f"unknown {role} URL scheme {scheme!r} in {redact(url)!r} "
            f"(supported: {', '.join(supported_schemes(role))})"
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        extra = _EXTRAS.get(scheme)
        if extra is None or (exc.name or "").startswith("microhive"):
            raise
        raise ConfigurationError(
            f"{scheme}:// needs the {extra!r} extra (missing module {exc.name!r}): "
            f"pip install 'microhive[{extra}]'"
        ) from None
    return getattr(module, class_name)


_EXTRAS = {
    "redis": "redis",
    "rediss": "redis",
    "redis+unix": "redis",
    "redis+sentinel": "redis",
    "amqp": "amqp",
    "amqps": "amqp",
    "nats": "nats",
    "tls": "nats",
    "kafka": "kafka",
}
"""The pip extra that brings each scheme's client library."""


_TOKEN_SCHEMES = frozenset({"nats", "tls"})
"""Schemes whose user info without a colon is a secret token, not a user name."""


_SECRET_OPTION = re.compile(
    r"(?i)([?&;](?:[a-z0-9_.-]*(?:pass|secret|token|credential|auth)[a-z0-9_.-]*)=)[^&;#]*"
)
"""A query option whose name says it holds a secret (``password=``, ``auth_token=``...)."""


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``: safe for logs and error messages.

    Works on the text, not on a parse: a password holding ``/``, ``?`` or ``#`` unescaped, a bad
    port or a missing scheme must not make it show. When in doubt it hides more, never less.
    For NATS (``nats://TOKEN@host``) user info without a colon is a token: hidden whole. Query
    options whose names say they hold a secret (``?password=...``, ``&auth_token=...``) are
    hidden too, for a secret put there by mistake.
    """
    text = _SECRET_OPTION.sub(r"\1***", _redact_userinfo(str(url)))
    return _NESTED_URL.sub(_redact_nested, text)


_NESTED_URL = re.compile(r"(?i)([?&;]results=)([^&;#]*)")
"""``results=<URL>`` (where tasks keep results): a URL of its own, percent-encoded, whose
password must be hidden as well (docs/results.md)."""


def _redact_nested(match: re.Match[str]) -> str:
    return match.group(1) + quote(redact(unquote(match.group(2))), safe=":/@*[],")


def _redact_userinfo(text: str) -> str:
    scheme_end = text.find("://")
    start = scheme_end + 3 if scheme_end >= 0 else 0
    at = text.rfind("@")
    if at < start:
        return text
    userinfo = text[start:at]
    if ":" not in userinfo:
        if text[: max(scheme_end, 0)].lower() in _TOKEN_SCHEMES:
            return f"{text[:start]}***{text[at:]}"
        return text
    user = userinfo.split(":", 1)[0]
    return f"{text[:start]}{user}:***{text[at:]}"


def number_option(where: str, key: str, value: str, *, integer: bool = False) -> float:
    """A numeric URL query option (``?claim_idle=5``): a finite number >= 0 (an integer when
    ``integer``), or a :class:`ConfigurationError` naming ``where`` (a redacted URL), the
    option and the value. Every transport's options parser uses it."""
    try:
        number: float = int(value) if integer else float(value)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigurationError(f"{where}: option {key}={value!r} must be {kind}") from None
    if number < 0 or not math.isfinite(number):
        raise ConfigurationError(f"{where}: option {key} must be >= 0")
    return number
