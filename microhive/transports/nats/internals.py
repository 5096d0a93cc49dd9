"""Every use of nats-py's private internals, in one place.

microhive borrows four of them, for speed and for correctness (docs/transports/nats.md,
"nats-py internals"); tests/canary/test_nats_internals.py asserts each one, and pyproject.toml
caps nats-py at the newest minor version they were checked against:

- ``Client._process_msg`` (called by the parser for every ``MSG``) is overridden to hand a
  message of microhive's subscriptions straight to its handler, and ``_process_headers``
  parses its headers: no ``Msg`` object, no queue, no task switch per message.
- ``publish_now`` writes a ``PUB`` into ``_pending``/``_pending_data_size`` and wakes the
  flusher through ``_flush_queue`` (as ``publish()`` does, without a coroutine);
  ``publish_block_now`` does the same for an ``HPUB`` with microhive's constant header block
  (a queue send with its marker).
- ``barrier`` writes the pending buffer with ``_flush_pending`` before nats-py's PING.
- ``unsubscribe`` tells the server with ``_send_unsubscribe`` first; ``subscription._id``
  is the subscription's sid.

When the internals are not the known ones, :func:`client_class` gives nats-py's client as it
is: microhive then runs on nats-py's public callbacks (slower, same behaviour).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from .wire import MARKED_BLOCK, MARKER, MARKER_ENVELOPE, parse_headers

Handler = Callable[[bytes, bytes, bytes, "dict[str, str] | None"], Awaitable[None] | None]
"""Receives ``(subject, reply, data, headers)`` of each message of a subscription."""
Failed = Callable[[int, bytes, bytes, bytes, BaseException], None]
"""Told ``(sid, subject, reply, data, error)`` when handling a message raised."""

PROCESS_MSG = ["self", "sid", "subject", "reply", "data", "headers"]
"""The parameters of ``Client._process_msg`` that the override takes over."""


def ours(task: asyncio.Task[Any] | None) -> bool:
    """True when ``task`` itself is being cancelled (then a CancelledError must go on)."""
    return task is not None and task.cancelling() > 0


def known(client: Any) -> bool:
    """Whether nats-py's client class ``client`` has the internals microhive overrides."""
    try:
        return list(inspect.signature(client._process_msg).parameters) == PROCESS_MSG and (
            inspect.iscoroutinefunction(client._process_headers)
        )
    except (TypeError, ValueError, AttributeError):
        return False


@functools.cache
def client_class() -> Any:
    """nats-py's client with the direct hand-over, or nats-py's client as it is."""
    from nats.aio.client import Client

    if not known(Client):
        return Client

    class DirectClient(Client):
        def __init__(self) -> None:
            super().__init__()
            self.direct: dict[int, Handler] = {}
            self.failed: Failed | None = None

        def publish_now(self, subject: bytes, payload: bytes) -> bool:
            """``PUB`` written to the pending buffer as ``publish()`` does, without its
            per-message checks (``subject`` is microhive's own, validated once) and without a
            coroutine. False when ``publish()`` must do it: not connected, too big, the buffer
            full, or this nats-py's internals not the known ones."""
            command = b"PUB %b %d\r\n%b\r\n" % (subject, len(payload), payload)
            return self._write_now(command, len(payload))

        def publish_block_now(self, subject: str, reply: str, block: bytes, payload: bytes) -> bool:
            """``HPUB`` with a ready header block (``block``, microhive's own and constant:
            nothing to encode or check per message), as :meth:`publish_now` writes ``PUB``."""
            size = len(block) + len(payload)
            command = b"HPUB %b %b %d %d\r\n%b%b\r\n" % (
                subject.encode(),
                reply.encode(),
                len(block),
                size,
                block,
                payload,
            )
            return self._write_now(command, len(payload))

        def _write_now(self, command: bytes, size: int) -> bool:
            """``command`` (of a message of ``size`` bytes) appended to the pending buffer."""
            try:
                if self._status != Client.CONNECTED or size > self._max_payload:
                    return False
                flusher, queue = self._flusher_task, self._flush_queue
                if flusher is None or flusher.done() or queue is None:
                    return False
                if self._pending_data_size + len(command) > self._max_pending_size:
                    return False
                self._pending.append(command)
                self._pending_data_size += len(command)
                self.stats["out_msgs"] += 1
                self.stats["out_bytes"] += size
                if queue.empty():  # wake the flusher, as publish() does
                    queue.put_nowait(asyncio.get_running_loop().create_future())
            except (AttributeError, TypeError, KeyError):
                return False
            return True

        async def _process_msg(
            self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
        ) -> None:
            """Runs inside nats-py's read loop: whatever it raises would end that loop (the
            connection goes deaf until a reconnect), so nothing but the loop's own
            cancellation leaves it; a failure goes to ``failed``."""
            try:
                handler = self.direct.get(sid)
                if handler is None:
                    await super()._process_msg(sid, subject, reply, data, headers)
                    return
                if not headers:
                    parsed = None
                elif headers == MARKED_BLOCK:  # microhive's own send: nothing to parse
                    parsed = {MARKER: MARKER_ENVELOPE}
                else:
                    try:
                        parsed = await self._process_headers(headers)
                    except Exception:  # a producer's block nats-py cannot read (not UTF-8)
                        parsed = parse_headers(headers)
                result = handler(subject, reply, data, parsed)
                if result is not None:
                    await result
            except asyncio.CancelledError as exc:
                if ours(asyncio.current_task()):
                    raise
                self._failed(sid, subject, reply, data, exc)
            except Exception as exc:
                self._failed(sid, subject, reply, data, exc)

        def _failed(
            self, sid: int, subject: bytes, reply: bytes, data: bytes, exc: BaseException
        ) -> None:
            failed = self.failed
            if failed is not None:
                with contextlib.suppress(Exception):
                    failed(sid, subject, reply, data, exc)

    return DirectClient


async def flush_pending(client: Any, timeout: float) -> None:
    """Write nats-py's pending buffer now (its ``flush()`` writes a PING ahead of it)."""
    flush = getattr(client, "_flush_pending", None)
    if flush is None or not client.is_connected:
        return
    try:
        async with asyncio.timeout(timeout):
            await flush(force_flush=True)
    except TypeError:  # another nats-py: its flush() is all there is
        pass


def sid_of(subscription: Any) -> int:
    """The sid of a nats-py subscription."""
    return int(subscription._id)


async def send_unsubscribe(client: Any, subscription: Any) -> bool:
    """``UNSUB`` written for ``subscription`` (False where this nats-py cannot)."""
    send = getattr(client, "_send_unsubscribe", None)
    if send is None:
        return False
    await send(sid_of(subscription))
    return True


def supports_reconnect_handler(client: Any) -> bool:
    """Whether nats-py lets microhive choose the pause between reconnection attempts."""
    try:
        return "reconnect_to_server_handler" in inspect.signature(client.connect).parameters
    except (TypeError, ValueError):
        return False
