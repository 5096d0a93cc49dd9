"""Listing a NATS store's jobs: its index stream, read whole (it is bounded per queue).

A create publishes ``[created_at, id]`` on ``<prefix>.jobs.index.<queue>``; the stream keeps
``index_limit`` messages per queue and ages them out with the bucket, so reading one queue's
index is bounded, and what it names is read from the bucket (an expired record is skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec

from .nats_layout import Layout

Entry = tuple[float, str]
"""``(created_at, job id)``."""


async def read(js: Any, layout: Layout, queue: str | None, wait: float = 5.0) -> list[Entry]:
    """Every entry of ``queue``'s index (of every queue's with ``None``), oldest first."""
    from nats.js import api

    subject = layout.index(queue)
    info = await js.stream_info(layout.index_stream, subjects_filter=subject)
    if not sum((info.state.subjects or {}).values()):
        return []
    entries: list[Entry] = []
    done = asyncio.get_running_loop().create_future()

    async def delivered(message: Any) -> None:
        entries.append(msgspec.json.decode(message.data, type=tuple[float, str]))
        if message.metadata.num_pending == 0 and not done.done():
            done.set_result(None)

    subscription = await js.subscribe(
        subject,
        stream=layout.index_stream,
        cb=delivered,
        ordered_consumer=True,
        deliver_policy=api.DeliverPolicy.ALL,
        inactive_threshold=30.0,
    )
    try:
        async with asyncio.timeout(wait):
            await done
    except TimeoutError:
        pass  # entries aged out since they were counted: what came is all there is
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
    return entries
