"""Exchanges inside one process, with AMQP 0-9-1 routing semantics.

``direct``: binding key equal to the routing key; ``fanout``: every bound queue; ``topic``:
dot-separated words where ``*`` matches exactly one word and ``#`` zero or more. A message
reaches each matching queue once, however many of its bindings match.
"""

from __future__ import annotations

from ...declarations import Exchange
from ...errors import ConfigurationError


def words(key: str) -> list[str]:
    """The words of a routing key or pattern; the empty key has none (as in RabbitMQ)."""
    return key.split(".") if key else []


def topic_matches(pattern: str, key: str) -> bool:
    """Whether the topic binding ``pattern`` matches the routing ``key``.

    Tracks the set of key positions the pattern can have reached: linear in the pattern
    length times the key length, with no backtracking.
    """
    key_words = words(key)
    end = len(key_words)
    reached = {0}
    for word in words(pattern):
        if word == "#":
            reached = set(range(min(reached), end + 1))
        elif word == "*":
            reached = {i + 1 for i in reached if i < end}
        else:
            reached = {i + 1 for i in reached if i < end and key_words[i] == word}
        if not reached:
            return False
    return end in reached


class MemoryExchange:
    """One exchange: its bindings (queue name -> binding keys) and how it routes."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.bindings: dict[str, set[str]] = {}

    def bind(self, queue: str, key: str) -> None:
        self.bindings.setdefault(queue, set()).add(key)

    def unbind(self, queue: str, key: str) -> None:
        keys = self.bindings.get(queue)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self.bindings[queue]

    def route(self, routing_key: str) -> list[str]:
        """The queues a message published with ``routing_key`` goes to, each once."""
        kind = self.exchange.type
        if kind == "fanout":
            return list(self.bindings)
        if kind == "direct":
            return [queue for queue, keys in self.bindings.items() if routing_key in keys]
        return [
            queue
            for queue, keys in self.bindings.items()
            if any(topic_matches(pattern, routing_key) for pattern in keys)
        ]


def declare(exchanges: dict[str, MemoryExchange], exchange: Exchange) -> MemoryExchange:
    """The hive's exchange called ``exchange.name``; a different type is an error (as AMQP's
    PRECONDITION_FAILED)."""
    found = exchanges.get(exchange.name)
    if found is None:
        found = exchanges[exchange.name] = MemoryExchange(exchange)
    elif found.exchange.type != exchange.type:
        raise ConfigurationError(
            f"exchange {exchange.name!r} is already declared as {found.exchange.type!r}, "
            f"not {exchange.type!r}"
        )
    return found
