"""The broker's link to the cluster: one producer and one admin client, and producing.

aiokafka reconnects its clients by itself once they started, so the link's own work is the
first connection: ``connect()`` keeps trying, with the shared :data:`RECONNECT` pauses, for
``connect_timeout`` seconds in all (:data:`CONNECT_TIMEOUT` by default, as on every engine)
and then raises :class:`LinkDown`. A record that cannot be produced because the cluster is
unreachable raises :class:`LinkDown` too; any other refusal a :class:`TransportError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError

from ... import linkevents
from ...errors import TransportError
from ..links import RECONNECT, LinkDown
from .offsets import stop
from .options import KafkaOptions
from .producer import Batcher, Headers

UNREACHABLE = (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError)
"""What aiokafka raises when the cluster does not answer (as opposed to refusing)."""


class Link:
    """The producer (behind a :class:`Batcher`) and the admin client of one broker."""

    def __init__(self, options: KafkaOptions, what: str) -> None:
        self.options = options
        self.what = what  # the broker's repr (redacted URL), for errors and logs
        self._producer: Any = None
        self._admin: Any = None
        self._batcher: Batcher | None = None
        self.lost = False  # a send found the cluster unreachable; the next that gets through
        # restores it (aiokafka reconnects inside its clients and tells nobody)

    @property
    def producer(self) -> Any:
        if self._producer is None:
            raise TransportError(f"{self.what} is not connected")
        return self._producer

    @property
    def admin(self) -> Any:
        if self._admin is None:
            raise TransportError(f"{self.what} is not connected")
        return self._admin

    async def connect(self) -> None:
        """Start the clients, trying again for ``connect_timeout`` seconds in all."""
        options = self.options
        loop = asyncio.get_running_loop()
        deadline = loop.time() + options.connect_timeout
        attempts, last = 0, "no answer"
        while loop.time() < deadline:
            attempts += 1
            try:
                async with asyncio.timeout_at(deadline):
                    self._producer, self._admin = await self._start()
            except Exception as exc:  # refused, unreachable, no answer in time: try again
                timeout = isinstance(exc, TimeoutError)
                last = "no answer" if timeout else str(exc) or type(exc).__name__
            else:
                self._batcher = Batcher(self._producer)
                return
            pause = RECONNECT.delay(attempts)
            await asyncio.sleep(max(0.0, min(pause, deadline - loop.time())))
        raise LinkDown(
            f"{self.what}: cannot connect to {options.bootstrap} within "
            f"{options.connect_timeout:g} s (connect_timeout; {attempts} attempts): {last}"
        )

    async def _start(self) -> tuple[Any, Any]:
        options = self.options
        producer = AIOKafkaProducer(
            **options.common(),
            acks="all" if options.acks == "all" else 1,
            linger_ms=round(options.linger * 1000),
            max_batch_size=options.batch_size,
            enable_idempotence=False,
        )
        admin = AIOKafkaAdminClient(**options.common())
        try:
            await producer.start()
            await admin.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            with contextlib.suppress(Exception):
                await admin.close()
            raise
        return producer, admin

    async def produce(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> None:
        """One record, returning once the cluster acknowledged it."""
        batcher = self._batcher
        if batcher is None:
            raise TransportError(f"{self.what} is not connected")
        try:
            await batcher.send(topic, value, key, headers)
        except UNREACHABLE as exc:
            self.lost = True
            linkevents.lost(self, "kafka", "broker", self.options.safe_url)
            raise LinkDown(f"{self.what}: producing to {topic!r} failed: {exc}") from None
        except Exception as exc:
            raise TransportError(f"{self.what}: producing to {topic!r} failed: {exc}") from None
        if self.lost:
            self.lost = False
            linkevents.restored(self)

    async def close(self) -> None:
        """Send what is batched, then stop the clients."""
        linkevents.closed(self)
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            await batcher.close()
        producer, self._producer = self._producer, None
        admin, self._admin = self._admin, None
        if producer is not None:
            await stop(producer, self.what)  # sends what is batched first
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()
