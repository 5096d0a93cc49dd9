"""Running one handler invocation: receivers (signals, calls) and consumers (queue messages).

The policy lives here and nowhere else: ack only after the handler returned; on an error
or timeout, retry with backoff until the attempts run out, then dead-letter with the reason;
bad input goes to the dead-letter queue at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

from ..broker import Delivery
from ..envelope import Envelope, Kind
from ..errors import HandlerTimeout
from ..logs import enter_context, leave_context, log_context
from .context import _MESSAGE
from .handlers import Handler
from .specs import ConsumerSpec, ReceiverSpec

if TYPE_CHECKING:
    from .agent import MicroAgent


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
    handler: Handler, timeout: float | None, call: Coroutine[Any, Any, Any]
) -> Any:
    """Await ``call``, cancelled after ``timeout`` seconds with :class:`HandlerTimeout`.

    The first step runs at once, with no timer: most handlers finish without ever waiting,
    and a timer armed and cancelled for each of them would cost more than the handler. The
    time the first step took (it cannot be interrupted anyway) counts toward the timeout.
    """
    started = asyncio.get_running_loop().time() if timeout is not None else 0.0
    try:
        waiting_on = call.send(None)
    except StopIteration as stop:
        return stop.value
    if timeout is None:
        return await _Rest(call, waiting_on)
    timer = asyncio.timeout_at(started + timeout)
    try:
        async with timer:
            return await _Rest(call, waiting_on)
    except TimeoutError:
        if timer.expired():
            raise HandlerTimeout(f"{handler.name} exceeded its timeout of {timeout:g} s") from None
        raise


async def run_receiver(agent: MicroAgent, handler: Handler, envelope: Envelope) -> None:
    """Run one receiver for one signal or call; answer the call; never raise."""
    spec = handler.spec
    assert isinstance(spec, ReceiverSpec)
    parameters = handler.parameters
    context = enter_context(handler=handler.name, msg=envelope.id, sender=envelope.sender)
    token = _MESSAGE.set(envelope)
    try:
        signal = spec.signal(envelope.name)
        payload = envelope.payload
        kwargs = dict(payload) if type(payload) is dict else {}
        if parameters.takes_signal:
            kwargs["signal"] = signal
        if parameters.takes_sender:
            kwargs["sender"] = envelope.sender
        if problem := parameters.misfit(kwargs):
            raise TypeError(f"{signal.name!r} arguments do not fit {handler.name}: {problem}")
        result = await run_with_timeout(handler, spec.timeout, handler.function(agent, **kwargs))
    except Exception as exc:
        agent.log.error(
            "receiver failed: %s",
            describe(exc),
            exc_info=not isinstance(exc, HandlerTimeout | TypeError),
        )
        await agent._error_hooks(handler, exc, envelope)
        if envelope.kind is Kind.CALL:
            await agent._reply(envelope, error=exc)
    else:
        if envelope.kind is Kind.CALL:
            await agent._reply(envelope, value=result)
    finally:
        _MESSAGE.reset(token)
        leave_context(context)


async def process(agent: MicroAgent, handler: Handler, delivery: Delivery) -> None:
    spec = handler.spec
    assert isinstance(spec, ConsumerSpec)
    envelope = delivery.envelope
    if envelope is None:
        with log_context(handler=handler.name):
            reason = f"undecodable message: {delivery.error}"
            agent.log.error("%s (%d bytes); dead-lettered", reason, len(delivery.raw))
            await delivery.dead_letter(reason)
        return
    with log_context(handler=handler.name, msg=envelope.id, sender=envelope.sender):
        token = _MESSAGE.set(envelope)
        try:
            await _process(agent, handler, spec, delivery, envelope)
        finally:
            _MESSAGE.reset(token)


async def _process(
    agent: MicroAgent, handler: Handler, spec: ConsumerSpec, delivery: Delivery, envelope: Envelope
) -> None:
    try:
        call = _prepare(agent, handler, spec, envelope)
    except Exception as exc:
        reason = f"invalid payload: {describe(exc)}"
        agent.log.error("%s; dead-lettered", reason)
        await delivery.dead_letter(reason)
        return
    if spec.autoack:
        await delivery.ack()
    try:
        await run_with_timeout(handler, spec.timeout, call)
    except asyncio.CancelledError:
        if not spec.autoack:
            await asyncio.shield(delivery.release())
        raise
    except Exception as exc:
        await agent._error_hooks(handler, exc, envelope)
        await _failed(agent, spec, delivery, envelope, exc)
    else:
        if not spec.autoack:
            await delivery.ack()


def _prepare(agent: MicroAgent, handler: Handler, spec: ConsumerSpec, envelope: Envelope) -> Any:
    payload = envelope.payload
    if spec.queue.schema is not None:
        return handler.function(agent, spec.queue.schema.model_validate(payload))
    if isinstance(payload, dict):
        if problem := handler.parameters.misfit(payload):
            raise TypeError(f"payload does not fit {handler.name}: {problem}")
        return handler.function(agent, **payload)
    if not handler.parameters.positional:
        raise TypeError(f"{handler.name} takes keywords, payload is {type(payload).__name__}")
    return handler.function(agent, payload)


async def _failed(
    agent: MicroAgent, spec: ConsumerSpec, delivery: Delivery, envelope: Envelope, exc: Exception
) -> None:
    reason = describe(exc)
    attempts = spec.retries + 1
    traceback = not isinstance(exc, HandlerTimeout)
    if spec.autoack:
        agent.log.error("handler failed (autoack, not retried): %s", reason, exc_info=traceback)
        return
    if envelope.attempt < attempts:
        delay = spec.backoff.delay(envelope.attempt)
        agent.log.warning(
            "attempt %d of %d failed: %s; retry in %.2f s",
            envelope.attempt,
            attempts,
            reason,
            delay,
        )
        await delivery.retry(delay, reason)
    elif spec.dead_letter:
        agent.log.error(
            "attempt %d of %d failed: %s; dead-lettered",
            envelope.attempt,
            attempts,
            reason,
            exc_info=traceback,
        )
        await delivery.dead_letter(f"{reason} (after {envelope.attempt} attempts)")
    else:
        agent.log.error(
            "attempt %d of %d failed: %s; dropped (dead_letter=False)",
            envelope.attempt,
            attempts,
            reason,
            exc_info=traceback,
        )
        await delivery.ack()
