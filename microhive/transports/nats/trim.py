"""Trimming: streams keep acknowledged messages for replay, and are purged down to the newest
``history`` of them every ``trim_interval`` by the processes that consume them, but only at a
moment when nothing is pending (see :func:`trim` for why)."""

from __future__ import annotations

import asyncio
import logging

from ...errors import TransportError
from ...stopping import cancel_and_wait
from ..links import RECONNECT
from .jetstream import JetStream

log = logging.getLogger("microhive.nats")


async def trim(jetstream: JetStream, queue: str) -> None:
    """Purge what is acknowledged, keeping the newest ``history`` messages: only while
    every durable consumer of the queue has nothing pending and nothing unacknowledged.

    A purge makes nats-server (2.9) forget *every* unacknowledged delivery of the
    stream's consumers, not only those below the purged sequence, so it must not run
    while a message is held: a consumer that died holding one would never get it back.
    """
    stream = jetstream.options.stream(queue)
    listing = await jetstream.api(f"CONSUMER.LIST.{stream}", {"offset": 0})
    durables = [
        item
        for item in listing.get("consumers") or []
        if (item.get("config") or {}).get("durable_name")
        and (item.get("config") or {}).get("ack_policy") != "none"
    ]
    if not durables or any(
        int(item.get("num_pending", 0)) or int(item.get("num_ack_pending", 0)) for item in durables
    ):
        return
    state = await jetstream.stream_state(stream)
    first, last = int(state.get("first_seq", 0)), int(state.get("last_seq", 0))
    upto = last - jetstream.options.history + 1
    if upto > first:
        await jetstream.api(f"STREAM.PURGE.{stream}", {"seq": upto})


class Trimmer:
    """Trims one queue while this broker has consumers of it (``users``)."""

    def __init__(self, jetstream: JetStream, queue: str) -> None:
        self.jetstream = jetstream
        self.queue = queue
        self.users = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.jetstream.options.trim_interval > 0:
            self.task = asyncio.get_running_loop().create_task(
                self._run(), name=f"microhive.nats.trim.{self.queue}"
            )

    async def stop(self) -> None:
        task, self.task = self.task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        interval = self.jetstream.options.trim_interval
        failures = 0
        while True:
            await asyncio.sleep(interval if not failures else RECONNECT.delay(failures) + interval)
            try:
                await trim(self.jetstream, self.queue)
                failures = 0
            except TransportError as exc:
                failures += 1
                if failures == 1:
                    log.warning("trimming %r: %s", self.queue, exc)
            except Exception:  # never end the loop
                failures += 1
                log.exception("trimming %r failed", self.queue)
