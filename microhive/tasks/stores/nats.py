"""Job records in NATS JetStream key-value: revisions make every step atomic.

- create-if-absent: a write expecting the key's last revision to be 0 (or the revision of an
  expired record, :mod:`.nats_layout`);
- a transition or a join: read, merge, write expecting the revision read (compare-and-swap),
  again from the read when another writer came first;
- a retried write carries the same ``Nats-Msg-Id``, so one whose acknowledgement was lost
  is recognised by the server (a duplicate) instead of being applied or refused twice;
- a waiter is an ordered consumer on the job's key that starts at its last value (the
  server pushes what comes next: nothing to poll, and nothing written before the consumer
  existed is missed); after a reconnect every waiter starts a new one.

The connection is the NATS transport's (:class:`~microhive.transports.nats.link.Link`): the
same URL options, credentials, TLS and reconnects; reads (direct gets) and writes go over its
multiplexed request inbox, consumers through nats-py's JetStream API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import msgspec

from ...errors import TransportError
from ...transports.links import RECONNECT, LinkDown
from ...transports.nats import jetstream
from ...transports.nats.link import Link
from ...transports.nats.options import NatsOptions, parse
from ...transports.nats.wire import STATUS, Message
from ..store import DEFAULT_RESULT_TTL, JobRecord, JobState, ResultStore
from ..store import decode_record as decode
from ..store import encode_record as encode
from . import nats_index
from . import nats_layout as layout
from .fields import changed
from .nats_layout import Layout

T = TypeVar("T")

log = logging.getLogger("microhive.tasks")

MAX_AGE = 7 * 24 * 3600.0
"""The bucket's ``max_age``: the longest any record is kept, whatever its ``ttl``."""

INDEX_LIMIT = 10_000
"""Ids kept per queue for :meth:`NatsStore.jobs`."""

_RECHECK = object()


class NatsStore(ResultStore):
    """``nats://`` or ``tls://`` URL, with the NATS transport's options (``prefix`` names the
    bucket ``<prefix>_jobs``)."""

    def __init__(
        self, url: str = "nats://", *, max_age: float = MAX_AGE, index_limit: int = INDEX_LIMIT
    ) -> None:
        self.options: NatsOptions = parse(url)
        self.layout = Layout(self.options)
        self.max_age = max_age
        self.index_limit = index_limit
        self._link: Link | None = None
        self._js: Any = None
        self._opening = asyncio.Lock()
        self._waiters: set[asyncio.Future[Any]] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"<NatsStore {self.options.safe_url}>"

    # -- connecting ------------------------------------------------------------------------

    async def _jetstream(self) -> Any:
        if self._js is not None:
            return self._js
        if self._closed:
            raise LinkDown(f"{self!r} is closed")
        async with self._opening:
            if self._js is None:
                link = Link(self.options, "result store")
                await link.open()
                link.watch(up=self._reconnected)
                js = link.client.jetstream(timeout=self.options.request_timeout)
                self._link = link
                try:
                    await self._retrying(
                        lambda: layout.declare(js, self.options, self.max_age, self.index_limit)
                    )
                except BaseException:
                    await link.close()
                    self._link = None
                    raise
                self._js = js
        return self._js

    def _reconnected(self) -> None:
        """Whatever was pushed while the connection was down may be lost: look again."""
        for future in self._waiters:
            if not future.done():
                future.set_result(_RECHECK)

    async def _retrying(self, step: Callable[[], Awaitable[T]]) -> T:
        """``step()`` through outages, for ``retry_timeout`` seconds."""
        from nats import errors
        from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

        transient = (
            errors.TimeoutError,
            errors.ConnectionClosedError,
            errors.ConnectionReconnectingError,
            errors.NoRespondersError,
            errors.StaleConnectionError,
            NoStreamResponseError,
            ServiceUnavailableError,
            LinkDown,
            OSError,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.retry_timeout
        failures = 0
        while True:
            try:
                return await step()
            except transient as exc:
                failures += 1
                pause = RECONNECT.delay(failures)
                if loop.time() + pause > deadline or (self._link and self._link.closed):
                    reason = str(exc) or type(exc).__name__
                    raise LinkDown(f"{self!r}: NATS did not answer: {reason}") from None
                await asyncio.sleep(pause)

    # -- reading and writing one key -------------------------------------------------------

    async def _request(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> Message:
        """One request over the link's multiplexed inbox (the transport's fast path), through
        outages and a JetStream that is not answering yet, for ``retry_timeout`` seconds."""
        await self._jetstream()
        link = self._link
        if link is None:
            raise LinkDown(f"{self!r} is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.retry_timeout
        failures = 0
        while True:
            try:
                await link.wait_up(deadline)
                answer = await link.request_raw(subject, data, headers=headers)
                if not answer.headers or answer.headers.get(STATUS) != "503":
                    return answer
                reason = "JetStream does not answer (no responders)"
            except LinkDown as exc:
                reason = str(exc)
            failures += 1
            if link.closed or loop.time() >= deadline:
                raise LinkDown(f"{self!r}: NATS did not answer: {reason}")
            await asyncio.sleep(min(RECONNECT.delay(failures), max(0.0, deadline - loop.time())))

    async def _read(self, subject: str) -> tuple[bytes | None, int]:
        """The live value under ``subject`` (or ``None``) and its revision (0: never written)."""
        body = msgspec.json.encode({"last_by_subj": subject})
        answer = await self._request(f"$JS.API.DIRECT.GET.{self.layout.stream}", body)
        headers = answer.headers or {}
        if headers.get(STATUS) == "404":
            return None, 0
        if STATUS in headers:
            raise TransportError(f"{self!r}: reading {subject!r}: {headers}")
        revision = int(headers.get(layout.REVISION, 0))
        return (answer.data if layout.live(headers) else None), revision

    async def _publish(self, subject: str, data: bytes, headers: dict[str, str] | None) -> bool:
        """A JetStream publish; ``False`` when it expected another last revision."""
        try:
            jetstream.decode(await self._request(subject, data, headers), subject)
        except jetstream.ApiError as exc:
            if exc.err_code in layout.WRONG_LAST_SEQUENCE:
                return False
            raise TransportError(f"{self!r}: writing {subject!r}: {exc}") from None
        return True

    async def _write(self, subject: str, data: bytes, last: int, ttl: float) -> bool:
        """Write if the key's revision is still ``last``; ``False`` when it is not."""
        headers = {
            layout.EXPECTED_LAST: str(last),
            # the same for every retry of this write; from the OS, not from `random` (a
            # program that seeds `random` would repeat ids, and the server drop the writes)
            layout.MSG_ID: secrets.token_hex(16),
            layout.EXPIRES: layout.expires_header(ttl),
        }
        return await self._publish(subject, data, headers)

    # -- the interface -----------------------------------------------------------------

    async def create(
        self, record: JobRecord, *, ttl: float = DEFAULT_RESULT_TTL, awaited: bool = False
    ) -> bool:
        subject, value = self.layout.job(record.id), encode(record)
        entry = msgspec.json.encode([record.created_at, record.id])
        indexing = asyncio.ensure_future(
            self._publish(self.layout.index(record.queue), entry, None)
        )
        try:
            last = 0
            while not await self._write(subject, value, last, ttl):
                current, last = await self._read(subject)
                if current is not None:
                    return False
            return True
        finally:
            try:
                await indexing  # listed even if it lost: jobs() reads the record itself
            except Exception as exc:  # the record is what counts: only listing misses it
                log.warning("%r: job %r is not listed by jobs(): %s", self, record.id, exc)

    async def get(self, job_id: str) -> JobRecord | None:
        value, _ = await self._read(self.layout.job(job_id))
        return None if value is None else decode(value)

    async def transition(
        self,
        job_id: str,
        state: JobState | None,
        changes: Mapping[str, Any] | None = None,
        *,
        ttl: float = DEFAULT_RESULT_TTL,
    ) -> JobRecord | None:
        subject = self.layout.job(job_id)
        while True:
            value, last = await self._read(subject)
            if value is None:
                return None
            current = decode(value)
            if current.state.final:
                return None
            record = changed(current, state, changes)
            if await self._write(subject, encode(record), last, ttl):
                return record

    async def wait(self, job_id: str, timeout: float) -> JobRecord | None:
        try:
            async with asyncio.timeout(timeout):
                return await self._wait(job_id)
        except TimeoutError:
            return None

    async def _wait(self, job_id: str) -> JobRecord:
        record = await self.get(job_id)
        if record is not None and record.state.final:
            return record
        from nats.js import api

        js = await self._jetstream()
        loop = asyncio.get_running_loop()
        while True:
            future: asyncio.Future[Any] = loop.create_future()

            async def pushed(message: Any, future: asyncio.Future[Any] = future) -> None:
                if future.done() or not layout.live(message.headers):
                    return
                record = decode(message.data)
                if record.state.final:
                    future.set_result(record)

            self._waiters.add(future)
            subscription = None
            try:
                subscription = await self._retrying(
                    lambda: js.subscribe(
                        self.layout.job(job_id),
                        stream=self.layout.stream,
                        cb=pushed,
                        ordered_consumer=True,
                        deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
                        inactive_threshold=30.0,
                    )
                )
                found = await future
                if isinstance(found, JobRecord):
                    return found
            finally:
                self._waiters.discard(future)
                if subscription is not None:
                    with contextlib.suppress(Exception):
                        await subscription.unsubscribe()

    async def join(
        self, group: str, member: str, expected: int, *, ttl: float = DEFAULT_RESULT_TTL
    ) -> bool:
        subject = self.layout.join(group)
        while True:
            value, last = await self._read(subject)
            members = set(msgspec.json.decode(value, type=list[str])) if value else set()
            members.add(member)
            if await self._write(subject, msgspec.json.encode(sorted(members)), last, ttl):
                return len(members) >= expected

    async def jobs(
        self, queue: str | None = None, state: JobState | None = None, limit: int = 100
    ) -> list[JobRecord]:
        newest: dict[str, float] = {}
        js = await self._jetstream()
        entries = await self._retrying(lambda: nats_index.read(js, self.layout, queue))
        for created_at, job_id in entries:
            newest[job_id] = max(created_at, newest.get(job_id, created_at))
        ids = sorted(newest, key=newest.__getitem__, reverse=True)
        found: list[JobRecord] = []
        for start in range(0, len(ids), 64):
            records = await asyncio.gather(*(self.get(i) for i in ids[start : start + 64]))
            for record in records:
                if record is None or (queue is not None and record.queue != queue):
                    continue
                if state is None or record.state == state:
                    found.append(record)
            if len(found) >= limit:
                break
        found.sort(key=lambda record: record.created_at, reverse=True)
        return found[:limit]

    async def close(self) -> None:
        self._closed = True
        self._reconnected()  # waiters raise LinkDown: the store they wait on is gone
        link, self._link, self._js = self._link, None, None
        if link is not None:
            await link.close()
