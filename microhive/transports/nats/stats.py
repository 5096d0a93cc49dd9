"""A queue's figures on JetStream, from its durable consumer's info and its dead-letter
stream's state.

- **in flight**: ``num_ack_pending`` (delivered to any process, not acknowledged yet);
- **consumers**: ``num_waiting``, the pull requests open on the server. Every microhive
  consumer keeps one open while it has free prefetch slots, so idle consumers are counted
  exactly; a consumer whose slots are all taken has none open (not counted while busy), one
  with a large prefetch may have two, and a closed consumer's request lingers until its
  ``expires``. JetStream keeps no list of the clients of a durable consumer, so no exact
  count exists.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ...errors import TransportError
from ...stats import QueueStats
from .jetstream import CONSUMER_NOT_FOUND, STREAM_NOT_FOUND, ApiError, JetStream
from .places import Place


async def consumer_info(
    jetstream: JetStream, place: Place, redeclare: Callable[[], Awaitable[None]], what: str
) -> dict[str, Any]:
    """The durable consumer's info, declaring it again when the server lost it."""
    try:
        return await jetstream.consumer_info(place)
    except ApiError as exc:
        if exc.err_code not in (CONSUMER_NOT_FOUND, STREAM_NOT_FOUND):
            raise TransportError(f"{what}: {exc}") from None
    await redeclare()
    return await jetstream.consumer_info(place)


def length(info: dict[str, Any]) -> int:
    """Not yet acknowledged: not delivered yet, plus delivered and not acknowledged."""
    return int(info.get("num_pending", 0)) + int(info.get("num_ack_pending", 0))


async def figures(
    jetstream: JetStream, queue: str, info: dict[str, Any], dead_stream: str
) -> QueueStats:
    try:
        dead = int((await jetstream.stream_state(dead_stream)).get("messages", 0))
    except ApiError as exc:
        if exc.err_code != STREAM_NOT_FOUND:
            raise
        dead = 0
    waiting, pending = int(info.get("num_waiting", 0)), int(info.get("num_ack_pending", 0))
    return QueueStats(queue, length(info), waiting, pending, dead)
