"""A confirmed publish: mandatory, on the link's confirm pipeline, each caller waiting for its
own ``basic.ack``, and what RabbitMQ's other answers mean for the sender."""

from __future__ import annotations

import asyncio

import aiormq.exceptions as amqp_errors

from ...errors import TransportError, UnroutableError
from ..links import LinkDown
from .link import Link, broken, cancelled_by_link
from .pipeline import Pipeline


class QueueFull(TransportError):
    """RabbitMQ refused a message (``x-overflow: reject-publish`` on a full queue)."""


async def pipeline(link: Link, deadline: float) -> Pipeline:
    """The link's confirm pipeline (waits for a reconnect until ``deadline``)."""
    return link.ready_confirms() or await link.confirms(deadline)


async def confirmed(
    link: Link,
    through: Pipeline,
    exchange: str,
    routing_key: str,
    header: bytes,
    data: bytes,
    message_id: str,
    deadline: float,
) -> None:
    """Publish (mandatory) through ``through`` and wait for the confirm.

    Raises :class:`UnroutableError` when RabbitMQ returned the message, :class:`QueueFull`
    when it refused it, and :class:`LinkDown` when the channel went away first (the caller
    publishes again on the next connection).
    """
    options = link.options
    try:
        if through.in_flight >= through.window:
            async with asyncio.timeout_at(deadline):
                await through.room()
        confirm = through.publish(
            exchange,
            routing_key,
            header,
            data,
            mandatory=True,
            message_id=message_id,
            deadline=deadline,
        )
        assert confirm is not None
        await _confirm(confirm, deadline)
    except TimeoutError:
        raise TransportError(
            f"RabbitMQ at {options.safe_url} did not confirm a message for {routing_key!r} "
            f"within {options.retry_timeout:g} s (the connection may be blocked by a resource "
            "alarm); it may still arrive"
        ) from None
    except amqp_errors.PublishError:
        raise UnroutableError(
            f"RabbitMQ returned a message to exchange {exchange!r} with routing key "
            f"{routing_key!r}: no queue is bound for it"
        ) from None
    except amqp_errors.DeliveryError:
        raise QueueFull(
            f"RabbitMQ refused a message for {routing_key!r} (the queue is full and its "
            "overflow policy is reject-publish)"
        ) from None
    except asyncio.CancelledError as exc:
        if cancelled_by_link(exc):
            raise LinkDown("channel closed before the confirm") from None
        raise
    except Exception as exc:
        if broken(exc):
            raise LinkDown(str(exc)) from exc
        raise link.translate(exc) from exc


async def _confirm(confirm: asyncio.Future[object], deadline: float) -> None:
    """Wait for ``confirm``; the pipeline cancels it at ``deadline`` (one timer for all
    publishes), which is a :class:`TimeoutError` here, not a cancellation of the caller."""
    try:
        await confirm
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the caller was cancelled
        if asyncio.get_running_loop().time() >= deadline:
            raise TimeoutError from None
        raise  # the link cancelled it: the channel is gone
