"""Job records in this process: the memory transport's store and the reference semantics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from ..store import DEFAULT_RESULT_TTL, JobRecord, JobState, ResultStore

SWEEP_EVERY = 1024
"""Writes between two sweeps of expired records and join sets: a long-running process keeps
only what is alive, at an amortised cost of one dict scan per this many writes."""


class MemoryStore(ResultStore):
    """Records in a dict, expired on read and by a sweep every :data:`SWEEP_EVERY` writes;
    waiters share one event per job, kept only while somebody waits."""

    def __init__(self) -> None:
        self._records: dict[str, tuple[JobRecord, float]] = {}
        self._groups: dict[str, tuple[set[str], float]] = {}
        self._finished: dict[str, asyncio.Event] = {}
        self._waiting: dict[str, int] = {}
        self._writes = 0

    def _written(self) -> None:
        self._writes += 1
        if self._writes % SWEEP_EVERY:
            return
        now = time.monotonic()
        for key in [key for key, (_, expires) in self._records.items() if expires <= now]:
            del self._records[key]
        for key in [key for key, (_, expires) in self._groups.items() if expires <= now]:
            del self._groups[key]

    def _wake(self, job_id: str) -> None:
        event = self._finished.pop(job_id, None)
        if event is not None:
            event.set()

    def _live(self, job_id: str) -> JobRecord | None:
        found = self._records.get(job_id)
        if found is None:
            return None
        record, expires = found
        if expires <= time.monotonic():
            del self._records[job_id]
            return None
        return record

    def _event(self, job_id: str) -> asyncio.Event:
        event = self._finished.get(job_id)
        if event is None:
            event = self._finished[job_id] = asyncio.Event()
        return event

    async def create(
        self, record: JobRecord, *, ttl: float = DEFAULT_RESULT_TTL, awaited: bool = False
    ) -> bool:
        if self._live(record.id) is not None:
            return False
        self._records[record.id] = (record, time.monotonic() + ttl)
        self._written()
        if record.state.final:
            self._wake(record.id)
        return True

    async def get(self, job_id: str) -> JobRecord | None:
        return self._live(job_id)

    async def transition(
        self,
        job_id: str,
        state: JobState | None,
        changes: Mapping[str, Any] | None = None,
        *,
        ttl: float = DEFAULT_RESULT_TTL,
    ) -> JobRecord | None:
        record = self._live(job_id)
        if record is None or record.state.final:
            return None
        fields = dict(changes or {})
        if state is not None:
            fields["state"] = state
        record = msgspec.structs.replace(record, **fields)
        self._records[job_id] = (record, time.monotonic() + ttl)
        self._written()
        if record.state.final:
            self._wake(job_id)
        return record

    async def wait(self, job_id: str, timeout: float) -> JobRecord | None:
        record = self._live(job_id)
        if record is not None and record.state.final:
            return record
        event = self._event(job_id)
        self._waiting[job_id] = self._waiting.get(job_id, 0) + 1
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            return None
        finally:
            left = self._waiting.pop(job_id) - 1
            if left:
                self._waiting[job_id] = left
            elif self._finished.get(job_id) is event:
                del self._finished[job_id]  # nobody waits any more
        return self._live(job_id)

    async def join(
        self, group: str, member: str, expected: int, *, ttl: float = DEFAULT_RESULT_TTL
    ) -> bool:
        now = time.monotonic()
        members, expires = self._groups.get(group, (set(), 0.0))
        if expires <= now:  # expired: forgotten, like a record
            members = set()
        members.add(member)
        self._groups[group] = (members, now + ttl)
        self._written()
        return len(members) >= expected

    async def jobs(
        self, queue: str | None = None, state: JobState | None = None, limit: int = 100
    ) -> list[JobRecord]:
        found = [
            record
            for job_id in list(self._records)
            if (record := self._live(job_id)) is not None
            and (queue is None or record.queue == queue)
            and (state is None or record.state == state)
        ]
        found.sort(key=lambda record: record.created_at, reverse=True)
        return found[:limit]
