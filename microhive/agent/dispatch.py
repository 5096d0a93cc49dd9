"""Running one handler invocation: receivers (signals, calls) and consumers (queue messages).

The policy lives here and nowhere else: ack only after the handler returned; on an error
or timeout, retry with backoff until the attempts run out, then dead-letter with the reason;
bad input goes to the dead-letter queue at once.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..broker import Consumer, Delivery
from ..envelope import Envelope, Kind
from ..errors import ConsumerClosed, HandlerTimeout
from ..logs import log_context
from .context import _MESSAGE
from .handlers import Handler
from .specs import ConsumerSpec, ReceiverSpec

if TYPE_CHECKING:
    from .agent import MicroAgent


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def run_with_timeout(handler: Handler, timeout: float | None, call: Any) -> Any:
    if timeout is None:
        return await call
    try:
        async with asyncio.timeout(timeout):
            return await call
    except TimeoutError:
        raise HandlerTimeout(f"{handler.name} exceeded its timeout of {timeout:g} s") from None


async def run_receiver(agent: MicroAgent, handler: Handler, envelope: Envelope) -> None:
    spec = handler.spec
    assert isinstance(spec, ReceiverSpec)
    with log_context(handler=handler.name, msg=envelope.id, sender=envelope.sender):
        token = _MESSAGE.set(envelope)
        try:
            signal = next(s for s in spec.signals if s.name == envelope.name)
            payload = envelope.payload if isinstance(envelope.payload, dict) else {}
            kwargs = dict(payload)
            if handler.parameters.accepts("signal"):
                kwargs["signal"] = signal
            if handler.parameters.accepts("sender"):
                kwargs["sender"] = envelope.sender
            if problem := handler.parameters.misfit(kwargs):
                raise TypeError(f"{signal.name!r} arguments do not fit {handler.name}: {problem}")
            result = await run_with_timeout(
                handler, spec.timeout, handler.function(agent, **kwargs)
            )
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


async def consume_loop(agent: MicroAgent, handler: Handler, consumer: Consumer) -> None:
    """Take deliveries while a concurrency slot is free; each runs in its own task."""
    spec = handler.spec
    assert isinstance(spec, ConsumerSpec)
    slots = asyncio.Semaphore(spec.concurrency)
    while True:
        await slots.acquire()
        try:
            delivery = await consumer.get()
        except ConsumerClosed:
            slots.release()
            return
        except asyncio.CancelledError:
            slots.release()
            raise
        except Exception as exc:  # the transport reconnects by itself; don't spin
            slots.release()
            agent.log.error("consumer of %r: %s", spec.queue.name, describe(exc))
            await asyncio.sleep(1)
            continue
        task = agent._spawn(process(agent, handler, delivery))
        task.add_done_callback(lambda _: slots.release())


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
    if spec.autoack:
        agent.log.error("handler failed (autoack, not retried): %s", reason)
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
            "attempt %d of %d failed: %s; dead-lettered", envelope.attempt, attempts, reason
        )
        await delivery.dead_letter(f"{reason} (after {envelope.attempt} attempts)")
    else:
        agent.log.error(
            "attempt %d of %d failed: %s; dropped (dead_letter=False)",
            envelope.attempt,
            attempts,
            reason,
        )
        await delivery.ack()
