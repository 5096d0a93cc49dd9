"""Which engine keeps a broker's results, chosen by URL like everything else.

``open_engine_store(url)``: a Redis or NATS store for a ``redis://`` or ``nats://`` URL.
``results_url_of(broker)``: where a broker's tasks keep their results (docs/results.md).
"""

from __future__ import annotations

from ...errors import ConfigurationError
from ...urls import redact, scheme_of
from ..store import ResultStore

REDIS_SCHEMES = ("redis", "rediss", "redis+unix")
NATS_SCHEMES = ("nats", "tls")


def open_engine_store(url: str) -> ResultStore:
    """The result store ``url`` names (connected on first use)."""
    scheme = scheme_of(url)
    if scheme in REDIS_SCHEMES:
        from .redis import RedisStore

        return RedisStore(url)
    if scheme in NATS_SCHEMES:
        from .nats import NatsStore

        return NatsStore(url)
    raise ConfigurationError(
        f"results cannot be kept at {redact(url)!r}: a result store URL is redis://, "
        "rediss://, redis+unix://, nats:// or tls:// (memory:// keeps them in the broker)"
    )
