"""Which engine keeps a broker's results, chosen by URL like everything else.

``open_engine_store(url)``: a Redis or NATS store for a ``redis...://`` or ``nats://`` URL.
``results_url_of(broker)``: where a broker's tasks keep their results (docs/results.md).
"""

from __future__ import annotations

from ...broker import QueueBroker
from ...errors import ConfigurationError
from ...urls import redact, scheme_of
from ..store import ResultStore

REDIS_SCHEMES = ("redis", "rediss", "redis+unix", "redis+sentinel")
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
        "rediss://, redis+unix://, redis+sentinel://, nats:// or tls:// (memory:// keeps "
        "them in the broker)"
    )


def results_url_of(broker: QueueBroker) -> str:
    """Where ``broker``'s tasks keep their results: its ``results=`` URL option if it has
    one, else its own URL on Redis, NATS and memory (the engines with a keyed store that
    expires and wakes waiters); AMQP and Kafka have none, so there the option is required."""
    options = getattr(broker, "options", None)
    given = getattr(options, "results", "") or ""
    if given:
        if scheme_of(given) not in REDIS_SCHEMES + NATS_SCHEMES:
            raise ConfigurationError(
                f"{redact(broker.url)!r}: results={redact(given)!r} is not a result store URL "
                "(redis://, rediss://, redis+unix://, redis+sentinel://, nats:// or tls://)"
            )
        return given
    scheme = scheme_of(broker.url)
    if scheme in REDIS_SCHEMES + NATS_SCHEMES + ("memory",):
        return broker.url
    raise ConfigurationError(
        f"{redact(broker.url)!r}: {scheme}:// keeps no task results; name a Redis or NATS "
        f"store with the URL option results=, e.g. {scheme}://...?results=redis://127.0.0.1:6379/0 "
        "(percent-encode it if it has a query of its own; docs/results.md)"
    )
