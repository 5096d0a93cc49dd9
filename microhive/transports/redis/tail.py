"""Replay: ``tail(last=N)`` reads a queue's stream without a group, acknowledging nothing.

XREVRANGE for the last entries, then XREAD BLOCK from there. Entries re-added for a retry
(they carry a ``group`` field) are not new messages and are skipped. The reader has a
connection of its own and rides out outages. What trimming removed is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from ...errors import TransportError
from ..links import RECONNECT
from .link import Link
from .options import RedisOptions
from .wire import new_message

log = logging.getLogger("microhive.redis")


async def tail(options: RedisOptions, queue: str, stream: str, last: int) -> AsyncIterator[bytes]:
    """The last ``last`` messages of ``stream``, then every new one, as they come."""
    loop = asyncio.get_running_loop()
    link = Link(options, f"tail of {queue!r}", timeout=options.command_timeout + options.block)
    block = max(1, int(options.block * 1000))
    try:
        await link.ensure(loop.time() + options.retry_timeout)
        newest = await link.send(b"XREVRANGE", stream, b"+", b"-", b"COUNT", max(last, 1))
        cursor = newest[0][0] if newest else b"0-0"
        for _, fields in reversed(newest[:last] if last else []):
            if (data := new_message(fields)) is not None:
                yield data
        failures = 0
        while True:
            try:
                await link.ensure()
                reply = await link.send(
                    b"XREAD", b"COUNT", 500, b"BLOCK", block, b"STREAMS", stream, cursor
                )
            except TransportError as exc:
                failures += 1
                log.warning("tail of %r: %s; reading again", queue, exc)
                await asyncio.sleep(RECONNECT.delay(failures))
                continue
            failures = 0
            for entry_id, fields in reply[0][1] if reply else ():
                cursor = entry_id
                if (data := new_message(fields)) is not None:
                    yield data
    finally:
        await link.close()
