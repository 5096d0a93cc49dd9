"""Job records in this process: the memory transport's store and the reference semantics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from ..store import DEFAULT_RESULT_TTL, JobRecord, JobState, ResultStore


class MemoryStore(ResultStore):
    """Records in a dict, expired lazily on read; waiters are woken by one event per job."""

    def __init__(self) -> None:
        self._records: dict[str, tuple[JobRecord, float]] = {}
        self._groups: dict[str, tuple[set[str], float]] = {}
        self._finished: dict[str, asyncio.Event] = {}

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

    async def create(self, record: JobRecord, *, ttl: float = DEFAULT_RESULT_TTL) -> bool:
        if self._live(record.id) is not None:
            return False
        self._records[record.id] = (record, time.monotonic() + ttl)
        if record.state.final:
            self._event(record.id).set()
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
        if record.state.final:
            self._event(job_id).set()
        return record

    async def wait(self, job_id: str, timeout: float) -> JobRecord | None:
        record = self._live(job_id)
        if record is not None and record.state.final:
            return record
        event = self._event(job_id)
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            return None
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
