"""The Kafka transport: ``kafka://``, on aiokafka — queues only.

A queue is a topic, the consuming agents share a consumer group, retries and delayed sends
go through a delay topic, dead letters to a dead-letter topic. There is no signal bus on
Kafka (:class:`KafkaBus` refuses with advice). docs/transports/kafka.md maps every concept.
Install with ``pip install microhive[kafka]``.
"""

from .broker import KafkaBroker
from .bus import KafkaBus
from .consumer import KafkaConsumer
from .delivery import KafkaDelivery
from .options import KafkaOptions, parse

__all__ = ["KafkaBroker", "KafkaBus", "KafkaConsumer", "KafkaDelivery", "KafkaOptions", "parse"]
