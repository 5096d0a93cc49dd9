"""The RabbitMQ (AMQP 0-9-1) transport: ``amqp://`` and ``amqps://``, on aiormq.

See docs/transports/amqp.md for the topology it declares, its guarantees and tuning.
"""

from .broker import AmqpBroker, AmqpConsumer, AmqpDelivery
from .bus import AmqpBus
from .link import AccessRefused, LinkDown, QueueFull
from .options import Limits

__all__ = [
    "AccessRefused",
    "AmqpBroker",
    "AmqpBus",
    "AmqpConsumer",
    "AmqpDelivery",
    "Limits",
    "LinkDown",
    "QueueFull",
]
