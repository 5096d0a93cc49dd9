"""Exchanges and the bindings of queues to them: routing by key (AMQP semantics)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigurationError
from .names import check_name

EXCHANGE_TYPES = ("direct", "fanout", "topic")


@dataclass(frozen=True, slots=True)
class Exchange:
    """A routing point producers publish to with a routing key (AMQP semantics).

    ``direct`` routes to queues bound with a key equal to the routing key, ``fanout`` to
    every bound queue, ``topic`` to queues whose binding pattern matches the dotted routing
    key (``*`` one word, ``#`` zero or more words).
    """

    name: str
    type: str = "direct"

    def __post_init__(self) -> None:
        check_name("exchange", self.name)
        if self.type not in EXCHANGE_TYPES:
            raise ConfigurationError(
                f"exchange {self.name!r}: type must be one of {', '.join(EXCHANGE_TYPES)}, "
                f"not {self.type!r}"
            )

    def __repr__(self) -> str:
        return f"Exchange({self.name!r}, {self.type!r})"


@dataclass(frozen=True, slots=True)
class Binding:
    """A queue's subscription to an exchange: ``key`` is ignored by fanout exchanges."""

    exchange: Exchange
    key: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.exchange, Exchange):
            raise ConfigurationError(f"a binding needs an Exchange, not {self.exchange!r}")
        check_routing_key(f"binding to {self.exchange.name!r}", self.key)


def check_routing_key(what: str, key: str) -> str:
    """``key`` when every engine takes it as a routing key (AMQP caps it at 255 bytes)."""
    if not isinstance(key, str) or len(key.encode()) > 255:
        raise ConfigurationError(f"{what}: a routing key is a string of at most 255 bytes")
    return key


BindingLike = Binding | Exchange | tuple[Exchange, str]


def binding_of(queue: str, item: BindingLike) -> Binding:
    """The Binding a queue declaration's ``bindings=`` item stands for."""
    if isinstance(item, Binding):
        return item
    if isinstance(item, Exchange):
        return Binding(item)
    if isinstance(item, tuple) and len(item) == 2:
        return Binding(item[0], item[1])
    raise ConfigurationError(
        f"queue {queue!r}: a binding is Binding(exchange, key), (exchange, key) or an Exchange, "
        f"not {item!r}"
    )
