"""Acknowledgements, batched: the XACKs of one event-loop iteration go out as one command.

An ack does not wait for the server's answer (like an AMQP ack): a failed XACK is retried
in the background until ``retry_timeout``, and an entry whose XACK never lands is
delivered again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ...errors import TransportError
from ..links import LinkDown
from .commands import Commands
from .link import pack

log = logging.getLogger("microhive.redis")


class Acks:
    """The XACKs of one broker: per (stream, group), the batch still taking ids."""

    def __init__(self, commands: Commands) -> None:
        self.commands = commands
        self.open: dict[tuple[str, str], AckBatch] = {}  # not yet written
        self.sending: set[asyncio.Future[Any]] = set()  # written, not yet answered
        self.retrying: set[asyncio.Task[None]] = set()  # failed, retried in the background

    def ack(self, stream: str, group: str, entry_id: bytes) -> None:
        """XACK ``entry_id``; the acks of one event-loop iteration go out as one XACK,
        which keeps the place in line of the first (a later query on this process's
        connection sees them)."""
        key = (stream, group)
        batch = self.open.get(key)
        if batch is None:
            link = self.commands.link
            if link is None:  # closed under a handler: the entry stays pending
                log.warning(
                    "%s is closed: message %s of %s not acknowledged; it will be delivered again",
                    self.commands.owner,
                    entry_id.decode(),
                    stream,
                )
                return
            batch = self.open[key] = AckBatch(self, key)
            try:
                sent = link.send_lazy(batch.pack)
            except LinkDown:  # down: retried until it is back
                del self.open[key]
                batch.ids.append(entry_id)
                self.again(batch)
                return
            self.sending.add(sent)
            sent.add_done_callback(batch.resolve)
        batch.ids.append(entry_id)

    def again(self, batch: AckBatch) -> None:
        """An XACK failed: retry it in the background until ``retry_timeout``."""
        stream, group = batch.key
        commands = self.commands

        async def again() -> None:
            try:
                await commands.retrying(
                    lambda: commands.require().send(b"XACK", stream, group, *batch.ids)
                )
            except TransportError as exc:
                log.error(
                    "acknowledging %d message(s) of %s failed: %s; they will be delivered again",
                    len(batch.ids),
                    stream,
                    exc,
                )

        task = asyncio.get_running_loop().create_task(again())
        self.retrying.add(task)
        task.add_done_callback(self.retrying.discard)

    async def wait(self, timeout: float) -> None:
        """Let the acknowledgements on their way land (the broker is closing)."""
        waiting: set[Any] = {*self.sending, *self.retrying}
        if waiting:
            await asyncio.wait(waiting, timeout=timeout)


class AckBatch:
    """Entry ids acknowledged in one XACK."""

    __slots__ = ("acks", "ids", "key")

    def __init__(self, acks: Acks, key: tuple[str, str]) -> None:
        self.acks = acks
        self.key = key
        self.ids: list[bytes] = []

    def pack(self) -> bytes:
        """Called as the command is written: later acks start a new batch."""
        batches = self.acks.open
        if batches.get(self.key) is self:
            del batches[self.key]
        stream, group = self.key
        return pack((b"XACK", stream, group, *self.ids))

    def resolve(self, sent: asyncio.Future[Any]) -> None:
        acks = self.acks
        acks.sending.discard(sent)
        if acks.open.get(self.key) is self:  # the connection broke before the write
            del acks.open[self.key]
        if sent.cancelled() or sent.exception() is not None:
            if acks.commands.link is not None:
                acks.again(self)
            else:
                log.error(
                    "acknowledging %d message(s) of %s failed: broker closed; they will be "
                    "delivered again",
                    len(self.ids),
                    self.key[0],
                )
