"""Handler runs that middleware watches: told before and after (:class:`Handling` hooks), or
counted (:class:`~microhive.middleware.Counter`, bound once per handler and name).

Without middleware the runtime calls :mod:`.dispatch` directly and none of this runs; with
counters only (metrics), a consumer's message takes :func:`process_counted`: two counter
calls and two clock reads, no event object, no coroutine in between.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TYPE_CHECKING

from ..broker import Delivery
from ..envelope import Envelope, Kind
from ..middleware import Counter, Handling, count_end, count_start, log, notify
from .dispatch import cancelled_from_outside, runner_of, start_receiver
from .handlers import Handler
from .specs import ConsumerSpec

if TYPE_CHECKING:
    from .agent import MicroAgent

Counting = tuple[Counter, ...]
"""The counters of one handler and name (:meth:`~microhive.middleware.Middleware.counter`)."""


async def observed_receiver(agent: MicroAgent, handler: Handler, envelope: Envelope) -> None:
    """A receiver run with the agent's middleware told before and after."""
    kind = "call" if envelope.kind is Kind.CALL else "signal"
    event = Handling(kind, agent.name, handler.name, envelope.name, envelope)
    hooks = agent._hooks
    counting = agent._counting(kind, handler.name, envelope.name)
    notify(hooks.handling, event)
    if counting:
        count_start(counting, 1)
    try:
        rest = start_receiver(agent, handler, envelope, event)
        if rest is not None:
            await rest
    except BaseException as exc:
        event.outcome, event.error = "failed", exc
        raise
    finally:
        event.duration = perf_counter() - event.started
        notify(hooks.handled, event)
        if counting:
            count_end(counting, event.outcome, event.duration, 1)


async def observed(
    agent: MicroAgent, event: Handling, work: Awaitable[str], counting: Counting = ()
) -> None:
    """``work`` (a consumer's, batch's or job's run, returning its outcome) with the agent's
    middleware told before and after."""
    hooks = agent._hooks
    notify(hooks.handling, event)
    if counting:
        count_start(counting, event.size)
    try:
        event.outcome = await work
    except BaseException as exc:
        event.outcome = "released" if cancelled_from_outside(exc) else "failed"
        event.error = event.error or exc
        raise
    finally:
        event.duration = perf_counter() - event.started
        notify(hooks.handled, event)
        if counting:
            count_end(counting, event.outcome, event.duration, event.size)


async def process(agent: MicroAgent, handler: Handler, delivery: Delivery) -> None:
    """Run one consumer for one delivery and settle it: ack, retry, dead-letter or release."""
    if not agent._hooks.watching:
        await runner_of(handler)(agent, handler, delivery, None)
        return
    spec = handler.spec
    assert isinstance(spec, ConsumerSpec)
    event = Handling("message", agent.name, handler.name, spec.queue.name, delivery.envelope)
    counting = agent._counting("message", handler.name, spec.queue.name)
    await observed(agent, event, runner_of(handler)(agent, handler, delivery, event), counting)


async def process_counted(
    agent: MicroAgent, handler: Handler, counting: Counting, delivery: Delivery
) -> None:
    """:func:`process` when the only middleware watching runs are counters (metrics): no
    Handling, no coroutine in between, the counters bound once per handler."""
    count_start(counting, 1)
    started = perf_counter()
    outcome = "failed"
    try:
        outcome = await runner_of(handler)(agent, handler, delivery, None)
    except BaseException as exc:
        outcome = "released" if cancelled_from_outside(exc) else "failed"
        raise
    finally:
        count_end(counting, outcome, perf_counter() - started, 1)


async def counted_once(
    agent: MicroAgent,
    handler: Handler,
    start: Callable[[int], None],
    end: Callable[[str, float, int], None],
    delivery: Delivery,
) -> None:
    """One counter (the usual case: metrics), its methods bound: the cheapest watched run."""
    try:
        start(1)
    except Exception:
        log.exception("middleware counter %r failed", start)
    started = perf_counter()
    outcome = "failed"
    try:
        outcome = await runner_of(handler)(agent, handler, delivery, None)
    except BaseException as exc:
        outcome = "released" if cancelled_from_outside(exc) else "failed"
        raise
    finally:
        try:
            end(outcome, perf_counter() - started, 1)
        except Exception:
            log.exception("middleware counter %r failed", end)
