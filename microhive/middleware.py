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
from collections.abc import Iterable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from .envelope import Envelope

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


@dataclass(slots=True)
class Handling:
    """One handler run, as middleware sees it.

    ``kind`` is ``"signal"``, ``"call"``, ``"message"``, ``"batch"`` or ``"schedule"``;
    ``name`` the signal, queue or job; ``envelope`` the message (None for schedules and
    batches; ``size`` counts a batch's messages). ``state`` is the middleware's own scratch
    space (a span, a start time): each middleware should use a key of its own.
    """

    kind: str
    agent: str
    handler: str
    name: str
    envelope: Envelope | None = None
    size: int = 1
    started: float = field(default_factory=perf_counter)
    duration: float = 0.0
    outcome: str = "ok"
    error: BaseException | None = None
    state: dict[str, Any] = field(default_factory=dict)


class Middleware:
    """Base class: every hook does nothing. Override the ones you need."""

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


def chain(*groups: Iterable[Middleware]) -> tuple[Middleware, ...]:
    """The middleware of several sources, each once, in order."""
    return tuple(dict.fromkeys(m for group in groups for m in group))


def notify(middleware: tuple[Middleware, ...], hook: str, *args: Any) -> None:
    """Call ``hook`` on each; a middleware that raises is logged, never the message's fault."""
    for item in middleware:
        try:
            getattr(item, hook)(*args)
        except Exception:
            log.exception("middleware %r failed in %s", item, hook)
