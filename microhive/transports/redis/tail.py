"""Replay: ``tail(last=N)`` reads a queue's stream without a group, acknowledging nothing.

XREVRANGE for the last entries, then XREAD BLOCK from there. Entries re-added for a retry
(they carry a ``group`` field) are not new messages and are skipped; entries of plain
producers are adopted as the consumer adopts them (``read``). With a key, the history is
scanned backwards in pages until it holds ``last`` messages of that key (or the stream
ends). The reader has a connection of its own and rides out outages. What trimming removed
is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from ...errors import TransportError
from ..links import RECONNECT
from .link import Link
from .options import RedisOptions

log = logging.getLogger("microhive.redis")

Read = Callable[[bytes, list[bytes]], bytes | None]
"""An entry (id, fields) as the encoded envelope ``tail()`` yields; None to skip it."""

PAGE = 500


async def tail(
    options: RedisOptions,
    queue: str,
    stream: str,
    last: int,
    read: Read,
    matches: Callable[[bytes], bool] | None = None,
) -> AsyncIterator[bytes]:
    """The last ``last`` messages of ``stream`` (those ``matches`` takes), then every new
    one, as they come."""
    loop = asyncio.get_running_loop()
    link = Link(options, f"tail of {queue!r}", timeout=options.command_timeout + options.block)
    block = max(1, int(options.block * 1000))
    try:
        await link.ensure(loop.time() + options.retry_timeout)
        history, cursor = await _history(link, stream, last, read, matches)
        for old in history:
            yield old
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
                message = read(entry_id, fields) if fields else None
                if message is not None:
                    yield message
    finally:
        await link.close()


async def _history(
    link: Link, stream: str, last: int, read: Read, matches: Callable[[bytes], bool] | None
) -> tuple[list[bytes], bytes]:
    """The last ``last`` messages (oldest first) and the id to follow from."""
    newest = await link.send(b"XREVRANGE", stream, b"+", b"-", b"COUNT", 1)
    cursor = newest[0][0] if newest else b"0-0"
    found: list[bytes] = []
    if not last or not newest:
        return found, cursor
    start = cursor
    while len(found) < last:
        count = max(PAGE, last) if matches is not None else last - len(found)
        page = await link.send(b"XREVRANGE", stream, start, b"-", b"COUNT", count)
        for entry_id, fields in page:
            data = read(entry_id, fields) if fields else None
            if data is not None and (matches is None or matches(data)):
                found.append(data)
                if len(found) == last:
                    break
        if len(page) < count:
            break
        start = b"(" + page[-1][0]
    found.reverse()
    return found, cursor
