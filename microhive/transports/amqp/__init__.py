"""The RabbitMQ (AMQP 0-9-1) transport: ``amqp://`` and ``amqps://``, on aiormq.

See docs/transports/amqp.md for the topology it declares, its guarantees and tuning.
"""

from ..links import LinkDown
from .broker import AmqpBroker
from .bus import AmqpBus
from .confirms import QueueFull
from .consumer import AmqpConsumer
from .delivery import AmqpDelivery
from .link import AccessRefused
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
