"""Job records in Redis: one string key per job, Lua for every step that must be atomic.

- ``<prefix>job:<id>``: the record's JSON (``GET`` it from anywhere), ``PX`` ttl on every
  write. The prefix is the Redis transport's ``prefix=`` URL option (``microhive:``).
- A transition is a compare-and-set (:mod:`.redis_scripts`): the record is merged in Python
  and written only if the stored value is still the one merged from; a final record is never
  written again. The value last seen of each unfinished job is kept: a worker's first
  transition reads and writes (two round trips), its next ones only write (one).
- A final write publishes the record on the channel named like the key, in the same script;
  waiters are woken through one subscription per store (:mod:`.redis_wakeups`).
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

from ...transports.redis.commands import Commands
from ...transports.redis.link import SharedLink
from ...transports.redis.options import RedisOptions, parse
from ...transports.redis.scripts import Script
from ..store import DEFAULT_RESULT_TTL, JobRecord, JobState, ResultStore
from ..store import decode_record as decode
from ..store import encode_record as encode
from . import redis_scripts as scripts
from .fields import changed
from .redis_scripts import CREATE, JOIN, TRANSITION
from .redis_wakeups import RECHECK, Wakeups

SEEN_LIMIT = 10_000
"""Unfinished jobs whose last value a store remembers (each saves a read on a transition)."""

INDEX_LIMIT = 10_000
"""Ids kept per index (all jobs, each queue) for :meth:`RedisStore.jobs`."""


def _listener(options: RedisOptions) -> Any:
    """redis-py's client for the wake-ups: a connection of its own (the master a Sentinel
    names, after a failover too), without redis-py's retries (a silent resubscribe would hide
    the gap from the waiters)."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    kwargs = dict(options.connection, retry=Retry(NoBackoff(), 0))
    if not options.sentinels:
        return aioredis.Redis(connection_pool=aioredis.ConnectionPool(**kwargs))
    from redis.asyncio.sentinel import Sentinel

    for name in ("host", "port", "connection_class"):
        kwargs.pop(name, None)
    timeout = kwargs.get("socket_connect_timeout")
    watchers = Sentinel(list(options.sentinels), socket_connect_timeout=timeout)
    return watchers.master_for(options.master, **kwargs)


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
        self._listener = _listener(self.options)
        self._wakeups = Wakeups(self._listener, f"result store {self.options.safe_url}")
        self._seen: OrderedDict[str, bytes] = OrderedDict()  # unfinished jobs' last values

    def __repr__(self) -> str:
        return f"<RedisStore {self.options.safe_url}>"

    def key(self, job_id: str) -> str:
        return f"{self.options.prefix}job:{job_id}"

    def _index(self, queue: str | None) -> str:
        base = f"{self.options.prefix}jobs"
        return base if queue is None else f"{base}:{queue}"

    def _remember(self, job_id: str, value: bytes, record: JobRecord) -> None:
        if record.state.final:
            self._seen.pop(job_id, None)
            return
        self._seen[job_id] = value
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
        return await (await self._link()).run(*command)

    async def _script(self, script: Script, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        """``script`` with a last argument saying whether this is a retry (then a step whose
        reply was lost, already applied, is recognised), through outages."""
        commands = await self._link()
        attempts = 0

        async def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            return await self._attempt(script, keys, (*args, int(attempts > 1)))

        return await commands.retrying(attempt)

    async def _attempt(self, script: Script, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        return await self._commands.script_once(script, keys, args)

    # -- the interface -----------------------------------------------------------------

    async def create(self, record: JobRecord, *, ttl: float = DEFAULT_RESULT_TTL) -> bool:
        value = encode(record)
        key = self.key(record.id)
        keys = (key, self._index(None), self._index(record.queue))
        args = (value, _ms(ttl), repr(record.created_at), record.id, self.index_limit)
        created = bool(await self._script(CREATE, keys, (*args, int(record.state.final), key)))
        if created:
            self._remember(record.id, value, record)
        return created

    async def get(self, job_id: str) -> JobRecord | None:
        value: bytes | None = await self._run(b"GET", self.key(job_id))
        return None if value is None else decode(value)

    async def transition(
        self,
        job_id: str,
        state: JobState | None,
        changes: Mapping[str, Any] | None = None,
        *,
        ttl: float = DEFAULT_RESULT_TTL,
    ) -> JobRecord | None:
        key = self.key(job_id)
        current = self._seen.get(job_id)
        expected = "" if current is None else hashlib.sha1(current).hexdigest()
        record: JobRecord | None = None
        value = b""
        while True:
            if current is not None:
                record = changed(decode(current), state, changes)
                value = encode(record)
            final = int(record is not None and record.state.final)
            sha = hashlib.sha1(value).hexdigest() if value else ""
            args = (expected, value, sha, _ms(ttl), final, key)
            reply = await self._script(TRANSITION, (key,), args)
            outcome = int(reply[0])
            if outcome == scripts.WRITTEN and record is not None:
                self._remember(job_id, value, record)
                return record
            if outcome != scripts.CHANGED:  # missing or final: nothing written
                self._seen.pop(job_id, None)
                return None
            current = bytes(reply[1])
            expected = hashlib.sha1(current).hexdigest()

    async def wait(self, job_id: str, timeout: float) -> JobRecord | None:
        try:
            async with asyncio.timeout(timeout):
                return await self._wait(job_id)
        except TimeoutError:
            return None

    async def _wait(self, job_id: str) -> JobRecord:
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
        await self._listener.aclose()
        await self._listener.connection_pool.disconnect()
        link, self._commands.link = self._commands.link, None
        if link is not None:
            await SharedLink.release(link)
