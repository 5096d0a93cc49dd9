"""``microagent.tools.amqp``: ``AMQPBroker`` on RabbitMQ."""

from __future__ import annotations

from typing import Any

from ..broker import QueueBroker
from . import queue_broker


def AMQPBroker(dsn: str, **options: Any) -> QueueBroker:
    """The RabbitMQ queue broker (durable, confirmed, dead letters: see docs/transports/amqp.md)."""
    return queue_broker(dsn, **options)
