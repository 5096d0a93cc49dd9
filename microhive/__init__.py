"""microhive: micro-agents talking through a signal bus, a queue broker and schedules.

The same agent code runs on ``memory://`` and on real engines; see docs/concepts.md.
"""

from .agent.agent import MicroAgent
from .agent.context import current_message
from .agent.decorators import consumer, cron, on, periodic, receiver, task
from .agent.plain import tasks_agent
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
    ResultTimeout,
    Retry,
    TaskFailed,
    TaskRevoked,
    TransportError,
    UnknownNameError,
    UnroutableError,
)
from .registry import private_catalog
from .retry import Backoff
from .stats import QueueStats
from .tasks.canvas import Chain, Chord, Group, Signature, chain, chord, group
from .tasks.context import current_job
from .tasks.functions import TaskFunction, signature
from .tasks.job import Job
from .tasks.store import JobRecord, JobState, ResultStore

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
    "Chain",
    "Chord",
    "Codec",
    "ConfigurationError",
    "Consumer",
    "DeadLetter",
    "DecodeError",
    "Delivery",
    "Envelope",
    "Exchange",
    "Group",
    "HandlerAborted",
    "HandlerTimeout",
    "Job",
    "JobRecord",
    "JobState",
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
    "ResultStore",
    "ResultTimeout",
    "Retry",
    "Signal",
    "SignalBus",
    "SignalHandle",
    "Signature",
    "TaskFailed",
    "TaskFunction",
    "TaskRevoked",
    "TransportError",
    "UnknownNameError",
    "UnroutableError",
    "chain",
    "chord",
    "consumer",
    "cron",
    "current_job",
    "current_message",
    "group",
    "load_stuff",
    "on",
    "parse_catalog",
    "periodic",
    "private_catalog",
    "receiver",
    "signature",
    "task",
    "tasks_agent",
]
