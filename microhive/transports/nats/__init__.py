"""The NATS transport: ``nats://`` and ``tls://`` (TLS), on nats-py.

Signals and call replies travel on core NATS subjects; queues are JetStream streams with a
durable pull consumer shared by every consumer of a queue. docs/transports/nats.md maps
every concept to subjects, streams and consumers. Install with ``pip install microhive[nats]``.
"""

from .broker import NatsBroker
from .bus import NatsBus
from .consumer import NatsConsumer
from .delivery import NatsDelivery
from .options import NatsOptions, parse

__all__ = ["NatsBroker", "NatsBus", "NatsConsumer", "NatsDelivery", "NatsOptions", "parse"]
