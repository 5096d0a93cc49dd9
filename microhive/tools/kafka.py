"""``microagent.tools.kafka``: ``KafkaBroker``."""

from __future__ import annotations

from typing import Any

from ..broker import QueueBroker
from . import queue_broker


def KafkaBroker(dsn: str, **options: Any) -> QueueBroker:
    """The Kafka queue broker (consumer groups and committed offsets)."""
    return queue_broker(dsn, **options)
