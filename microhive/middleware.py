"""Middleware: code that watches (and may annotate) what a hive does — metrics, tracing, logs.

A :class:`Middleware` overrides the hooks it needs. They are plain synchronous calls on the
hot path, so they must be cheap and must not raise (a hook that raises is logged and the
message goes on as if it had not). Give middleware to a bus or broker
(``SignalBus.from_url(url, middleware=[...])``): the bus or broker calls
:meth:`~Middleware.publishing` for what it sends and :meth:`~Middleware.called` for its calls,
and an agent calls :meth:`~Middleware.handling` / :meth:`~Middleware.handled` around each of
its handlers with the middleware of its bus, its broker and its own ``middleware=``. With no
middleware anywhere, none of this runs: the hot paths check one empty tuple.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any, Protocol

from .envelope import Envelope
from .linkevents import LinkEvent

log = logging.getLogger("microhive.middleware")

OUTCOMES = (
    "ok",  # a receiver or scheduled job returned
    "failed",  # a receiver or scheduled job raised (or timed out)
    "acked",  # a consumer handled its message(s)
    "retried",  # failed; will be delivered again
    "dead-lettered",  # parked in the dead letters (bad input, attempts exhausted, Reject)
    "dropped",  # failed with dead_letter=False, or with autoack
    "released",  # given back unhandled (shutdown)
)
"""What :attr:`Handling.outcome` says once a handler ended."""


class Handling:
    """One handler run, as middleware sees it.

    ``kind`` is ``"signal"``, ``"call"``, ``"message"``, ``"batch"`` or ``"schedule"``;
    ``name`` the signal, queue or job; ``envelope`` the message (None for schedules and
    batches; ``size`` counts a batch's messages). ``state`` is the middleware's own scratch
    space (a span, a start time): each middleware should use a key of its own.
    (A plain class, not a dataclass: one is made per message.)
    """

    __slots__ = (
        "agent",
        "duration",
        "envelope",
        "error",
        "handler",
        "kind",
        "name",
        "outcome",
        "size",
        "started",
        "state",
    )

    def __init__(
        self,
        kind: str,
        agent: str,
        handler: str,
        name: str,
        envelope: Envelope | None = None,
        size: int = 1,
    ) -> None:
        self.kind = kind
        self.agent = agent
        self.handler = handler
        self.name = name
        self.envelope = envelope
        self.size = size
        self.started = perf_counter()
        self.duration = 0.0
        self.outcome = "ok"
        self.error: BaseException | None = None
        self.state: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<Handling {self.kind} {self.name!r} by {self.handler} {self.outcome}>"


class Counter(Protocol):
    """What a counting middleware keeps for one handler and one name (see
    :meth:`Middleware.counter`): told when a run starts and how it ended, with plain values
    instead of a :class:`Handling` (none is made for it)."""

    def started(self, size: int) -> None:
        """A run starts with ``size`` messages (1, or a batch's)."""

    def ended(self, outcome: str, duration: float, size: int) -> None:
        """The run ended: its outcome (:data:`OUTCOMES`) and duration in seconds."""


class Middleware:
    """Base class: every hook does nothing. Override the ones you need."""

    def counter(self, kind: str, agent: str, handler: str, name: str) -> Counter | None:
        """For middleware that only counts (metrics): a :class:`Counter` for the runs of
        ``handler`` of ``agent`` for ``name`` (a signal, queue or job; ``kind`` as in
        :class:`Handling`), asked once per handler and name, or None. The cheap way to watch
        handler runs: a consumer's message then costs two method calls, where
        :meth:`handling`/:meth:`handled` cost an event object, a coroutine and two hook
        calls. Both may be given; a middleware that needs the message or its context
        (tracing, logging) overrides :meth:`handling`/:meth:`handled` instead."""
        return None

    def publishing(self, envelope: Envelope, destination: str) -> None:
        """``envelope`` is about to be encoded and sent to ``destination`` (a signal's or
        queue's name, an exchange, a call's reply address). Adding headers here (a trace
        context) puts them on the wire."""

    def handling(self, event: Handling) -> None:
        """A handler starts, in the task that will run it (context variables set here are
        seen by the handler and by what it sends)."""

    def handled(self, event: Handling) -> None:
        """The handler ended: ``event.outcome``, ``event.error`` and ``event.duration``."""

    def called(self, signal: str, duration: float, error: BaseException | None) -> None:
        """A call from this process was answered (or failed: ``CallTimeout``, ``RemoteError``)."""

    def skipped(self, agent: str, handler: str, runs: int) -> None:
        """A schedule skipped ``runs`` due runs because the previous one was still going."""

    def linked(self, event: LinkEvent) -> None:
        """A connection to an engine was lost or is back (:mod:`microhive.linkevents`):
        any link of the process, heard once per middleware while a bus or broker carrying
        it is connected."""


def chain(*groups: Iterable[Middleware]) -> tuple[Middleware, ...]:
    """The middleware of several sources, each once, in order."""
    return tuple(dict.fromkeys(m for group in groups for m in group))


Hook = Callable[..., None]


class Hooks:
    """The hooks of a chain of middleware, bound once: each a tuple of the bound methods of
    the middleware that override it (a hook nobody overrides costs one empty check)."""

    __slots__ = (
        "called",
        "counting",
        "handled",
        "handling",
        "linked",
        "publishing",
        "skipped",
        "watching",
    )

    def __init__(self, middleware: tuple[Middleware, ...] = ()) -> None:
        self.publishing = _bound(middleware, "publishing")
        self.handling = _bound(middleware, "handling")
        self.handled = _bound(middleware, "handled")
        self.called = _bound(middleware, "called")
        self.skipped = _bound(middleware, "skipped")
        self.linked = _bound(middleware, "linked")
        self.counting = _bound(middleware, "counter")
        self.watching = bool(self.handling or self.handled)
        """True when handler runs are observed (the agent takes its observed path)."""


def _bound(middleware: tuple[Middleware, ...], name: str) -> tuple[Hook, ...]:
    base = getattr(Middleware, name)
    return tuple(getattr(m, name) for m in middleware if getattr(type(m), name, base) is not base)


def counters(hooks: Hooks, kind: str, agent: str, handler: str, name: str) -> tuple[Counter, ...]:
    """The counters the middleware of ``hooks`` keep for one handler and name."""
    found: list[Counter] = []
    for make in hooks.counting:
        try:
            counter = make(kind, agent, handler, name)
        except Exception:
            log.exception("middleware hook %r failed", make)
            continue
        if counter is not None:
            found.append(counter)
    return tuple(found)


def count_start(counting: tuple[Counter, ...], size: int) -> None:
    for counter in counting:
        try:
            counter.started(size)
        except Exception:
            log.exception("middleware counter %r failed", counter)


def count_end(counting: tuple[Counter, ...], outcome: str, duration: float, size: int) -> None:
    for counter in counting:
        try:
            counter.ended(outcome, duration, size)
        except Exception:
            log.exception("middleware counter %r failed", counter)


def notify(hooks: tuple[Hook, ...], *args: Any) -> None:
    """Call each hook; one that raises is logged, never the message's fault."""
    for hook in hooks:
        try:
            hook(*args)
        except Exception:
            log.exception("middleware hook %r failed", hook)
