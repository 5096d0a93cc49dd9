"""Running a batch consumer: one handler call for a list of messages, settled per message.

The same policy as one message at a time (dispatch.py), applied to each message of a batch:
bad input is dead-lettered at once and left out of the list; a handler that returns acks
them all; one that raises fails every message, each retried or dead-lettered by its own
attempt count; :class:`PartialFailure` fails only the items it names. The timeout covers the
whole call.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..broker import Delivery
from ..envelope import Envelope
from ..errors import PartialFailure
from ..logs import log_context
from ..middleware import Handling
from .dispatch import (
    cancelled_from_outside,
    describe,
    failure,
    run_with_timeout,
    settle_failure,
)
from .handlers import Handler
from .specs import ConsumerSpec
from .watched import observed

if TYPE_CHECKING:
    from .agent import MicroAgent


async def process_batch(agent: MicroAgent, handler: Handler, deliveries: list[Delivery]) -> None:
    """Run one batch handler for ``deliveries`` and settle each of them."""
    spec = handler.spec
    assert isinstance(spec, ConsumerSpec)
    counting = agent._counting("batch", handler.name, spec.queue.name)
    if agent._hooks.watching or counting:
        event = Handling("batch", agent.name, handler.name, spec.queue.name, size=len(deliveries))
        await observed(agent, event, _process_batch(agent, handler, deliveries), counting)
        return
    await _process_batch(agent, handler, deliveries)


async def _process_batch(agent: MicroAgent, handler: Handler, deliveries: list[Delivery]) -> str:
    spec = handler.spec
    assert isinstance(spec, ConsumerSpec)
    with log_context(handler=handler.name):
        taken: list[tuple[Delivery, Envelope]] = []
        items: list[Any] = []
        plain = spec.queue.schema is None
        for delivery in deliveries:
            envelope = delivery.envelope
            if envelope is not None and plain:  # the common case, without a coroutine
                taken.append((delivery, envelope))
                items.append(envelope.payload)
                continue
            item = await _item(agent, spec, delivery)
            if item is not _BAD:
                assert delivery.envelope is not None
                taken.append((delivery, delivery.envelope))
                items.append(item)
        if not taken:
            return "dead-lettered"
        if spec.autoack:
            await _ack_all(taken)
        try:
            await run_with_timeout(handler, spec.timeout, handler.function(agent, items))
        except BaseException as caught:
            if cancelled_from_outside(caught):
                if not spec.autoack:
                    await asyncio.shield(_release_all(taken))
                raise
            await _failed(agent, handler, spec, taken, failure(caught))
            return "failed"
        if not spec.autoack:
            await _ack_all(taken)
        return "acked"


_BAD = object()


async def _ack_all(taken: list[tuple[Delivery, Envelope]]) -> None:
    for delivery, _ in taken:
        if not delivery.ack_now():
            await delivery.ack()


async def _item(agent: MicroAgent, spec: ConsumerSpec, delivery: Delivery) -> Any:
    """The handler's view of one message (a model where the queue has a schema), or _BAD
    once a message that cannot be one was dead-lettered."""
    envelope = delivery.envelope
    if envelope is None:
        reason = f"undecodable message: {delivery.error}"
        agent.log.error("%s (%d bytes); dead-lettered", reason, len(delivery.raw))
        await delivery.dead_letter(reason)
        return _BAD
    schema = spec.queue.schema
    if schema is None:
        return envelope.payload
    try:
        return schema.model_validate(envelope.payload)
    except Exception as exc:
        reason = f"invalid payload: {describe(exc)}"
        agent.log.error("%s; dead-lettered", reason)
        await delivery.dead_letter(reason)
        return _BAD


async def _failed(
    agent: MicroAgent,
    handler: Handler,
    spec: ConsumerSpec,
    taken: list[tuple[Delivery, Envelope]],
    error: Exception,
) -> None:
    if isinstance(error, PartialFailure):
        failed = {
            index: failure(exc)
            for index, exc in error.failures.items()
            if isinstance(index, int) and 0 <= index < len(taken)
        }
        for index, (delivery, envelope) in enumerate(taken):
            if index not in failed:
                if not spec.autoack:
                    await delivery.ack()
                continue
            await agent._error_hooks(handler, failed[index], envelope)
            await settle_failure(agent, spec, delivery, envelope, failed[index])
        return
    await agent._error_hooks(handler, error, None)
    for delivery, envelope in taken:
        await settle_failure(agent, spec, delivery, envelope, error)


async def _release_all(taken: list[tuple[Delivery, Envelope]]) -> None:
    for delivery, _ in taken:
        await delivery.release()
