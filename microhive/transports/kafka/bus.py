"""No signal bus on Kafka: a clear refusal instead of a slow or leaky one.

Signals are instant, at-most-once broadcasts and calls need a reply channel per caller. On
Kafka a signal would be a produce plus a fetch round trip through the log (milliseconds
where Redis or NATS take tens of microseconds), every bus instance would need a topic read
outside any group, and every calling process a reply topic of its own that outlives it and
accumulates in the cluster. microhive therefore carries only queues on Kafka and asks for
another bus next to it; docs/transports/kafka.md explains the choice.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ...capabilities import Capabilities
from ...errors import ConfigurationError
from ...urls import redact

ADVICE = (
    "Kafka carries queues in microhive, not signals or calls: pair a Kafka broker with a "
    "redis://, nats:// or amqp:// bus (e.g. `microhive run ... --bus nats://127.0.0.1:4222 "
    "--broker kafka://127.0.0.1:9092`, or SignalBus.from_url('nats://...') next to "
    "QueueBroker.from_url('kafka://...')); see docs/transports/kafka.md"
)


class KafkaBus:
    """The ``kafka`` entry of the bus role: constructing it raises :class:`ConfigurationError`
    with the advice above, so ``SignalBus.from_url("kafka://...")`` fails clearly."""

    capabilities: ClassVar[Capabilities] = Capabilities(out_of_process=True)

    def __init__(self, url: str = "kafka://", **options: Any) -> None:
        raise ConfigurationError(f"no signal bus for {redact(url)!r}: {ADVICE}")
