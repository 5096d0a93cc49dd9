"""Running one handler invocation: receivers (signals, calls) and consumers (queue messages).

The policy lives here and nowhere else: ack only after the handler returned; on an error
or timeout, retry with backoff until the attempts run out, then dead-letter with the reason;
bad input goes to the dead-letter queue at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from ..broker import Delivery
from ..envelope import Envelope, Kind
from ..errors import HandlerAborted, HandlerTimeout, Reject, Retry
from ..logs import enter_handling, leave_handling, log_context
from ..middleware import Handling
from .handlers import Handler
from .specs import ConsumerSpec, ReceiverSpec

if TYPE_CHECKING:
    from .agent import MicroAgent


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def cancelled_from_outside(exc: BaseException) -> bool:
    """True when ``exc`` is the cancellation of the running task (shutdown, grace period over).

    A handler that raises ``CancelledError`` itself (say, it awaited a task other code
    cancelled) is not being cancelled: that is its failure, and must not end the worker
    running it. Only a task with a pending cancel request (``cancelling()``) is.
    """
    if not isinstance(exc, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def failure(exc: BaseException) -> Exception:
    """The exception a handler's failure is reported as: itself when it is an Exception.

    ``CancelledError``, ``SystemExit``, ``KeyboardInterrupt`` or a custom ``BaseException``
    raised by a handler fail that one message or run; they never end a worker or a schedule,
    nor (``sys.exit()`` in a handler) the process, which stops only by its own shutdown.
    """
    if isinstance(exc, Exception):
        return exc
    return HandlerAborted(f"handler raised {describe(exc)}", exc)


class _Rest:
    """Awaiting it runs the rest of a coroutine whose first step already ran (and waited)."""

    __slots__ = ("coroutine", "waiting_on")

    def __init__(self, coroutine: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self.coroutine = coroutine
        self.waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, value = self.coroutine, self.waiting_on
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # thrown in by the task (cancellation)
                try:
                    value = coroutine.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coroutine.send(sent)
                except StopIteration as stop:
                    return stop.value


async def run_with_timeout(
    handler: Handler,
    timeout: float | None,
    call: Coroutine[Any, Any, Any],
    on_wait: Callable[[], None] | None = None,
) -> Any:
    """Await ``call``, cancelled after ``timeout`` seconds with :class:`HandlerTimeout`.

    The first step runs at once, with no timer: most handlers finish without ever waiting,
    and a timer armed and cancelled for each of them would cost more than the handler. The
    timeout counts from the first time the handler waits (its first step, which nothing
    could interrupt anyway, is not clocked). ``on_wait()`` is called then, if it waits
    (a task marks itself started only then).
    """
    try:
        waiting_on = call.send(None)
    except StopIteration as stop:
        return stop.value
    if on_wait is not None:
        on_wait()
    started = asyncio.get_running_loop().time() if timeout is not None else 0.0
    return await _finish(handler, timeout, started, call, waiting_on)


async def _finish(
    handler: Handler,
    timeout: float | None,
    started: float,
    call: Coroutine[Any, Any, Any],
    waiting_on: Any,
) -> Any:
    """The rest of a handler whose first step waited on ``waiting_on``, under its timeout."""
    if timeout is None:
        return await _Rest(call, waiting_on)
    timer = asyncio.timeout_at(started + timeout)
    try:
        async with timer:
            result = await _Rest(call, waiting_on)
    except TimeoutError:
        if timer.expired():
            raise HandlerTimeout(f"{handler.name} exceeded its timeout of {timeout:g} s") from None
        raise
    if timer.expired():  # it caught the cancellation and went on: still a timeout
        raise HandlerTimeout(
            f"{handler.name} exceeded its timeout of {timeout:g} s (and ignored its cancellation)"
        )
    return result


def start_receiver(
    agent: MicroAgent, handler: Handler, envelope: Envelope, event: Handling | None = None
) -> Coroutine[Any, Any, None] | None:
    """Run one receiver for one signal or call up to its first wait; never raise.

    Returns None when everything is done, or what is left to await: the rest of a handler
    that waits, the answer to a call, the report of a failure. The hot path of every
    signal: no coroutine but the handler's own, one context variable set, no copy of the
    payload, no timer unless the handler waits.
    """
    spec = handler.spec
    assert isinstance(spec, ReceiverSpec)
    token = enter_handling(handler.name, envelope)
    try:
        parameters = handler.parameters
        payload = envelope.payload
        # ``**kwargs`` below copies, so the payload itself can be passed when nothing is added
        kwargs = payload if type(payload) is dict else {}
        if parameters.takes_signal or parameters.takes_sender:
            kwargs = dict(kwargs)
            if parameters.takes_signal:
                kwargs["signal"] = spec.signal(envelope.name)
            if parameters.takes_sender:
                kwargs["sender"] = envelope.sender
        if problem := parameters.misfit(kwargs):
            raise TypeError(f"{envelope.name!r} arguments do not fit {handler.name}: {problem}")
        call = handler.function(agent, **kwargs)
        try:
            waiting_on = call.send(None)
        except StopIteration as stop:
            if envelope.kind is Kind.CALL:
                return _answer(agent, handler, envelope, stop.value, None, event)
            return None
        return _rest_of_receiver(agent, handler, envelope, call, waiting_on, event)
    except BaseException as exc:
        if cancelled_from_outside(exc):
            raise
        return _answer(agent, handler, envelope, None, failure(exc), event)
    finally:
        leave_handling(token)


async def _rest_of_receiver(
    agent: MicroAgent,
    handler: Handler,
    envelope: Envelope,
    call: Coroutine[Any, Any, Any],
    waiting_on: Any,
    event: Handling | None = None,
) -> None:
    spec = handler.spec
    assert isinstance(spec, ReceiverSpec)
    token = enter_handling(handler.name, envelope)
    try:
        timeout = spec.timeout
        started = asyncio.get_running_loop().time() if timeout is not None else 0.0
        try:
            result = await _finish(handler, timeout, started, call, waiting_on)
        except BaseException as exc:
            if cancelled_from_outside(exc):
                raise
            await _answer(agent, handler, envelope, None, failure(exc), event)
        else:
            await _answer(agent, handler, envelope, result, None, event)
    finally:
        leave_handling(token)


async def _answer(
    agent: MicroAgent,
    handler: Handler,
    envelope: Envelope,
    result: Any,
    error: Exception | None,
    event: Handling | None = None,
) -> None:
    """Report a receiver's failure (log, error hooks) and answer a call with the outcome."""
    token = enter_handling(handler.name, envelope)
    try:
        if error is not None:
            if event is not None:
                event.outcome, event.error = "failed", error
            agent.log.error(
                "receiver failed: %s",
                describe(error),
                exc_info=None if isinstance(error, HandlerTimeout | TypeError) else error,
            )
            await agent._error_hooks(handler, error, envelope)
        if envelope.kind is Kind.CALL:
            await agent._reply(envelope, value=result, error=error)
    finally:
        leave_handling(token)


Run = Callable[["MicroAgent", Handler, Delivery, "Handling | None"], Awaitable[str]]
"""One delivery's run, returning its outcome: :func:`_process`, or a task's (which also keeps
its result and carries its workflow on)."""

_task_runner: list[Run] = []


def runner_of(handler: Handler) -> Run:
    spec = handler.spec
    assert isinstance(spec, ConsumerSpec)
    if spec.task is None:
        return _process
    if not _task_runner:
        from ..tasks.running import run_task  # the task layer builds on this module

        _task_runner.append(run_task)
    return _task_runner[0]


async def _process(
    agent: MicroAgent, handler: Handler, delivery: Delivery, event: Handling | None
) -> str:
    spec = handler.spec
    assert isinstance(spec, ConsumerSpec)
    envelope = delivery.envelope
    if envelope is None:
        with log_context(handler=handler.name):
            reason = f"undecodable message: {delivery.error}"
            agent.log.error("%s (%d bytes); dead-lettered", reason, len(delivery.raw))
            await delivery.dead_letter(reason)
        return "dead-lettered"
    token = enter_handling(handler.name, envelope)
    try:
        try:
            call = _prepare(agent, handler, spec, envelope)
        except Exception as exc:
            reason = f"invalid payload: {describe(exc)}"
            agent.log.error("%s; dead-lettered", reason)
            await delivery.dead_letter(reason)
            return "dead-lettered"
        if spec.autoack:
            await delivery.ack()
        try:
            try:  # the first step inline, as in run_with_timeout
                waiting_on = call.send(None)
            except StopIteration:
                pass
            else:
                timeout = spec.timeout
                started = asyncio.get_running_loop().time() if timeout is not None else 0.0
                await _finish(handler, timeout, started, call, waiting_on)
        except BaseException as caught:
            if cancelled_from_outside(caught):
                if not spec.autoack:
                    await asyncio.shield(delivery.release())
                raise
            error = failure(caught)
            if event is not None:
                event.error = error
            await agent._error_hooks(handler, error, envelope)
            return await settle_failure(agent, spec, delivery, envelope, error)
        if not spec.autoack:
            await delivery.ack()
        return "acked"
    finally:
        leave_handling(token)


def _prepare(agent: MicroAgent, handler: Handler, spec: ConsumerSpec, envelope: Envelope) -> Any:
    payload = envelope.payload
    if spec.queue.dead_of is not None:  # a dead letter: the handler takes it whole
        return handler.function(agent, payload)
    if spec.queue.schema is not None:
        return handler.function(agent, spec.queue.schema.model_validate(payload))
    if isinstance(payload, dict):
        if problem := handler.parameters.misfit(payload):
            raise TypeError(f"payload does not fit {handler.name}: {problem}")
        return handler.function(agent, **payload)
    if not handler.parameters.positional:
        raise TypeError(f"{handler.name} takes keywords, payload is {type(payload).__name__}")
    return handler.function(agent, payload)


async def settle_failure(
    agent: MicroAgent, spec: ConsumerSpec, delivery: Delivery, envelope: Envelope, exc: Exception
) -> str:
    """Retry, dead-letter or drop a failed message by the consumer's policy; the outcome."""
    reason = describe(exc)
    attempts = spec.retries + 1
    # one traceback per message, on its last attempt: retries log a line each
    traceback = not isinstance(exc, HandlerTimeout | HandlerAborted | Retry)
    if spec.autoack:
        agent.log.error("handler failed (autoack, not retried): %s", reason, exc_info=traceback)
        return "dropped"
    if isinstance(exc, Reject):
        if spec.dead_letter:
            agent.log.warning("rejected: %s; dead-lettered", exc.reason)
            await delivery.dead_letter(reason)
            return "dead-lettered"
        agent.log.warning("rejected: %s; dropped (dead_letter=False)", exc.reason)
        await delivery.ack()
        return "dropped"
    if envelope.attempt < attempts:
        if isinstance(exc, Retry):
            traceback = False
            delay = spec.backoff.delay(envelope.attempt) if exc.delay is None else exc.delay
        else:
            delay = spec.backoff.delay(envelope.attempt)
        agent.log.warning(
            "attempt %d of %d failed: %s; retry in %.2f s",
            envelope.attempt,
            attempts,
            reason,
            delay,
        )
        await delivery.retry(delay, reason)
        return "retried"
    if spec.dead_letter:
        agent.log.error(
            "attempt %d of %d failed: %s; dead-lettered",
            envelope.attempt,
            attempts,
            reason,
            exc_info=traceback,
        )
        tries = envelope.attempt
        await delivery.dead_letter(f"{reason} (after {tries} attempt{'s' if tries > 1 else ''})")
        return "dead-lettered"
    agent.log.error(
        "attempt %d of %d failed: %s; dropped (dead_letter=False)",
        envelope.attempt,
        attempts,
        reason,
        exc_info=traceback,
    )
    await delivery.ack()
    return "dropped"
