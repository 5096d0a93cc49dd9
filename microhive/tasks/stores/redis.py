"""Job records in Redis: one string key per job, Lua for every step that must be atomic.

- ``<prefix>job:<id>``: the record's JSON (``GET`` it from anywhere), ``PX`` ttl on every
  write. The prefix is the Redis transport's ``prefix=`` URL option (``microhive:``).
- A transition is a compare-and-set (:mod:`.redis_scripts`): the record is merged in Python
  and written only if the stored value is still the one merged from; a final record is never
  written again. The record last seen of each unfinished job is kept: a transition of a job
  not seen reads it (``GET``) and writes, the next ones only write.
- A final write publishes the record on the channel named like the key, in the same script;
  waiters are woken through one subscription per store (:mod:`.redis_wakeups`). A record
  made for a job its process will wait for also names that store's inbox channel
  (``meta["notify"]``, :mod:`.redis_inbox`), published to in the same step: no
  ``SUBSCRIBE`` per job.
- ``<prefix>jobs`` and ``<prefix>jobs:<queue>``: sorted sets of ids by ``created_at`` for
  :meth:`RedisStore.jobs`, trimmed to ``index_limit`` ids; expired ids are skipped and removed.
- ``<prefix>join:<group>``: a chord's set of finished members.

Commands go over the transport's pipelined link (:class:`~microhive.transports.redis.link.
SharedLink`: concurrent steps share round trips) and retry through an outage for the URL's
``retry_timeout``; a retried step that Redis had already applied (the reply was lost) is
recognised and reported as done.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import msgspec

from ...envelope import new_id
from ...transports.links import LinkDown
from ...transports.redis.commands import Commands
from ...transports.redis.link import SharedLink
from ...transports.redis.options import RedisOptions, parse
from ...transports.redis.scripts import Script
from ..store import DEFAULT_RESULT_TTL, JobRecord, JobState, ResultStore
from ..store import decode_record as decode
from ..store import encode_record as encode
from . import redis_scripts as scripts
from .fields import changed
from .redis_inbox import NOTIFY, Inbox
from .redis_scripts import CREATE, JOIN, TRANSITION
from .redis_wakeups import RECHECK, Wakeups

SEEN_LIMIT = 10_000
"""Unfinished jobs whose last value a store remembers (each saves a read on a transition)."""

INBOX_WAIT = 5.0
"""Seconds a store's first awaited ``create`` waits for its inbox subscription (then, or
while it is reconnecting, jobs are waited for on their own channels)."""

INDEX_LIMIT = 10_000
"""Ids kept per index (all jobs, each queue) for :meth:`RedisStore.jobs`."""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisStore(ResultStore):
    """``redis://``, ``rediss://`` or ``redis+unix://`` URL, with the transport's options."""

    def __init__(self, url: str = "redis://", *, index_limit: int = INDEX_LIMIT) -> None:
        self.options: RedisOptions = parse(url)
        self.index_limit = index_limit
        # commands: the transport's pipelined link, shared with a broker of the same URL
        self._commands = Commands(self.options, repr(self))
        self._opening = asyncio.Lock()
        inbox = f"{self.options.prefix}inbox:{new_id()}".encode()
        self._inbox = Inbox(inbox, SEEN_LIMIT, RECHECK)
        self._inbox_tried = False
        self._wakeups = Wakeups(self.options, f"result store {self.options.safe_url}", self._inbox)
        # unfinished jobs' last records and their values' SHA-1: the base of the next CAS
        self._seen: OrderedDict[str, tuple[JobRecord, str]] = OrderedDict()

    def __repr__(self) -> str:
        return f"<RedisStore {self.options.safe_url}>"

    def key(self, job_id: str) -> str:
        return f"{self.options.prefix}job:{job_id}"

    def _index(self, queue: str | None) -> str:
        base = f"{self.options.prefix}jobs"
        return base if queue is None else f"{base}:{queue}"

    def _remember(
        self, job_id: str, value: bytes, record: JobRecord, sha: str | None = None
    ) -> None:
        if record.state.final:
            self._seen.pop(job_id, None)
            return
        self._seen[job_id] = (record, sha or hashlib.sha1(value).hexdigest())
        self._seen.move_to_end(job_id)
        if len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)

    async def _link(self) -> Commands:
        if self._commands.link is None:
            async with self._opening:
                if self._commands.link is None:
                    self._commands.link = await SharedLink.acquire(self.options)
        return self._commands

    async def _run(self, *command: Any) -> Any:
        """One command, retried through an outage until ``retry_timeout``."""
        commands = self._commands if self._commands.link is not None else await self._link()
        return await commands.run(*command)

    async def _script(self, script: Script, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        """``script`` with a last argument saying whether this is a retry (then a step whose
        reply was lost, already applied, is recognised), through outages."""
        commands = self._commands if self._commands.link is not None else await self._link()
        link = commands.link
        attempts = 0
        if link is not None and link.up:  # the common case: one try, no retry machinery
            attempts = 1
            try:
                return await self._attempt(script, keys, (*args, 0))
            except LinkDown:
                pass  # it may have been applied: the retries say they are retries

        async def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            return await self._attempt(script, keys, (*args, int(attempts > 1)))

        return await commands.retrying(attempt)

    async def _attempt(self, script: Script, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        return await self._commands.script_once(script, keys, args)

    # -- the interface -----------------------------------------------------------------

    async def create(
        self, record: JobRecord, *, ttl: float = DEFAULT_RESULT_TTL, awaited: bool = False
    ) -> bool:
        generation = -1
        if awaited and not record.state.final and await self._inbox_up():
            generation = self._inbox.generation
            record = msgspec.structs.replace(record, meta={**record.meta, NOTIFY: self._inbox.name})
        value = encode(record)
        key = self.key(record.id)
        keys = (key, self._index(None), self._index(record.queue))
        args = (value, _ms(ttl), repr(record.created_at), record.id, self.index_limit)
        created = bool(await self._script(CREATE, keys, (*args, int(record.state.final), key)))
        # not remembered: the worker reads it before it runs (a revoke may come meanwhile)
        if created and generation >= 0:
            self._inbox.expect(record.id, generation)
        return created

    async def _inbox_up(self) -> bool:
        if self._inbox.ready.is_set():
            return True
        if self._inbox_tried:  # reconnecting: do not hold submits up for it
            return False
        self._inbox_tried = True
        return await self._wakeups.inbox_ready(INBOX_WAIT)

    async def get(self, job_id: str) -> JobRecord | None:
        value: bytes | None = await self._run(b"GET", self.key(job_id))
        if value is None:
            return None
        record = decode(value)
        if job_id in self._seen or not record.state.final:  # a later transition's CAS base
            self._remember(job_id, value, record)
        return record

    async def transition(
        self,
        job_id: str,
        state: JobState | None,
        changes: Mapping[str, Any] | None = None,
        *,
        ttl: float = DEFAULT_RESULT_TTL,
    ) -> JobRecord | None:
        key = self.key(job_id)
        seen = self._seen.get(job_id)
        if seen is not None:
            base, expected = seen
        else:  # a plain read first: cheaper than a script that only reads
            current = await self._run(b"GET", key)
            if current is None:
                return None
            base, expected = decode(current), hashlib.sha1(current).hexdigest()
        while True:
            if base.state.final:  # written once: nothing more (the script checks it too)
                self._seen.pop(job_id, None)
                return None
            record = changed(base, state, changes)
            value = encode(record)
            final = int(record.state.final)
            sha = hashlib.sha1(value).hexdigest()
            args = (expected, value, sha, _ms(ttl), final, key)
            reply = await self._script(TRANSITION, (key,), args)
            outcome = int(reply[0])
            if outcome == scripts.WRITTEN:
                self._remember(job_id, value, record, sha)
                return record
            if outcome != scripts.CHANGED:  # missing or final: nothing written
                self._seen.pop(job_id, None)
                return None
            current = bytes(reply[1])
            base, expected = decode(current), hashlib.sha1(current).hexdigest()

    async def wait(self, job_id: str, timeout: float) -> JobRecord | None:
        arrived = self._inbox.arrived(job_id)  # most often there already: no timer for it
        if arrived is not None:
            self._seen.pop(job_id, None)
            return decode(arrived)
        try:
            async with asyncio.timeout(timeout):
                return await self._wait(job_id)
        except TimeoutError:
            return None

    async def _wait(self, job_id: str) -> JobRecord:
        if self._inbox.expects(job_id):  # submitted here: its final value comes to the inbox
            data = await self._inbox.take(job_id)
            if data is not RECHECK:
                self._seen.pop(job_id, None)
                return decode(data)
        # A job this store saw unfinished (created or moved here) is most likely still
        # running: subscribe and read at once. Else (another process's job, a finished one)
        # one read first may spare the subscription.
        if job_id not in self._seen:
            record = await self.get(job_id)
            if record is not None and record.state.final:
                return record
        channel = self.key(job_id).encode()
        while True:
            future = await self._wakeups.listen(channel)
            try:
                record = await self.get(job_id)  # after SUBSCRIBE: nothing slips between
                if record is not None and record.state.final:
                    self._seen.pop(job_id, None)
                    return record
                data = await future
                if data is not RECHECK:
                    self._seen.pop(job_id, None)
                    return decode(data)
            finally:
                self._wakeups.forget(channel, future)

    async def join(
        self, group: str, member: str, expected: int, *, ttl: float = DEFAULT_RESULT_TTL
    ) -> bool:
        key = f"{self.options.prefix}join:{group}"
        done = await self._script(JOIN, (key,), (member, _ms(ttl), expected))
        return bool(done)

    async def jobs(
        self, queue: str | None = None, state: JobState | None = None, limit: int = 100
    ) -> list[JobRecord]:
        index = self._index(queue)
        found: list[JobRecord] = []
        start, page = 0, max(limit, 100)
        while len(found) < limit:
            ids, values = await self._page(index, start, page)
            if not ids:
                break
            expired = [job_id for job_id, value in zip(ids, values, strict=True) if value is None]
            for value in values:
                if value is None:
                    continue
                record = decode(value)
                if (queue is None or record.queue == queue) and state in (None, record.state):
                    found.append(record)
            if expired:  # gone by TTL: their index entries go too
                await self._run(b"ZREM", index, *expired)
            start += len(ids) - len(expired)
        return found[:limit]

    async def _page(
        self, index: str, start: int, size: int
    ) -> tuple[list[bytes], list[bytes | None]]:
        ids: list[bytes] = await self._run(b"ZREVRANGE", index, start, start + size - 1)
        if not ids:
            return [], []
        values = await self._run(b"MGET", *(self.key(job_id.decode()) for job_id in ids))
        return ids, values

    async def close(self) -> None:
        await self._wakeups.close()
        link, self._commands.link = self._commands.link, None
        if link is not None:
            await SharedLink.release(link)
