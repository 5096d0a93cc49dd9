"""Following a queue's history without consuming it: ``broker.<queue>.tail(...)``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .envelope import Envelope
from .errors import ConfigurationError, DecodeError

if TYPE_CHECKING:
    from .broker import QueueBroker
    from .declarations import Queue

log = logging.getLogger("microhive.broker")


def check_tail(last: Any, key: Any) -> None:
    """Reject bad ``tail()`` arguments at the call, not at the first iteration."""
    if not isinstance(last, int) or isinstance(last, bool) or last < 0:
        raise ConfigurationError("tail(last=...) must be an integer >= 0")
    if key is not None and not isinstance(key, str):
        raise ConfigurationError("tail(key=...) must be a string")


async def follow(
    broker: QueueBroker, queue: Queue, last: int, key: str | None
) -> AsyncIterator[Envelope]:
    """The envelopes of ``queue``'s history then its new messages, decoded and validated as
    a consumer's handler gets them; one that fails is skipped with a warning."""
    await broker.connect()
    schema = queue.schema
    source = (
        broker._tail(queue.name, last) if key is None else broker._tail_keyed(queue.name, last, key)
    )
    async for data in source:
        try:
            envelope = broker.codec.decode(data)
            if key is not None and envelope.headers.get("x-key") != key:
                continue
            if schema is not None:
                envelope.payload = schema.model_validate(envelope.payload)
        except (DecodeError, ValidationError) as exc:
            log.warning("tail of %r: skipped a message: %s", queue.name, exc)
            continue
        yield envelope
