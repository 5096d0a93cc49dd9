"""microhive: micro-agents talking through a signal bus, a queue broker and schedules.

The same agent code runs on ``memory://`` and on real engines; see docs/concepts.md.
"""

from .agent.agent import MicroAgent
from .agent.context import current_message
from .agent.decorators import consumer, cron, on, periodic, receiver
from .broker import MAX_DELAY, Consumer, DeadLetter, Delivery, QueueBroker, QueueHandle
from .bus import Reply, SignalBus, SignalHandle
from .capabilities import Capabilities
from .catalog import Catalog, load_stuff, parse_catalog
from .codecs import Codec, JsonCodec
from .declarations import Binding, Exchange, Namespace, Queue, Signal
from .envelope import Envelope, Kind
from .errors import (
    CallError,
    CallTimeout,
    CapabilityError,
    CatalogError,
    ConfigurationError,
    DecodeError,
    HandlerAborted,
    HandlerTimeout,
    MicroHiveError,
    PartialFailure,
    PayloadError,
    PayloadTooLarge,
    Reject,
    RemoteError,
    Retry,
    TransportError,
    UnknownNameError,
    UnroutableError,
)
from .registry import private_catalog
from .retry import Backoff
from .stats import QueueStats

Agent = MicroAgent

__all__ = [
    "MAX_DELAY",
    "Agent",
    "Backoff",
    "Binding",
    "CallError",
    "CallTimeout",
    "Capabilities",
    "CapabilityError",
    "Catalog",
    "CatalogError",
    "Codec",
    "ConfigurationError",
    "Consumer",
    "DeadLetter",
    "DecodeError",
    "Delivery",
    "Envelope",
    "Exchange",
    "HandlerAborted",
    "HandlerTimeout",
    "JsonCodec",
    "Kind",
    "MicroAgent",
    "MicroHiveError",
    "Namespace",
    "PartialFailure",
    "PayloadError",
    "PayloadTooLarge",
    "Queue",
    "QueueBroker",
    "QueueHandle",
    "QueueStats",
    "Reject",
    "RemoteError",
    "Reply",
    "Retry",
    "Signal",
    "SignalBus",
    "SignalHandle",
    "TransportError",
    "UnknownNameError",
    "UnroutableError",
    "consumer",
    "cron",
    "current_message",
    "load_stuff",
    "on",
    "parse_catalog",
    "periodic",
    "private_catalog",
    "receiver",
]
