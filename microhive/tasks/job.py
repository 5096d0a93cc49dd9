"""A job seen from the caller: its state, progress and result, from any process."""

from __future__ import annotations

import time
from typing import Any, Generic, TypeVar

import msgspec

from ..errors import ResultTimeout, TaskFailed, TaskRevoked
from .store import JobRecord, JobState, ResultStore

T = TypeVar("T")

FOREVER_STEP = 3600.0
"""``result()`` without a timeout waits in steps of this many seconds (each woken early)."""


def decode_value(data: bytes | None) -> Any:
    return None if data is None else msgspec.json.decode(data)


class Job(Generic[T]):
    """A handle on one job id: ``await job.result(timeout=3)``.

    Cheap to make and holding nothing but the id and the store, so ``broker.job(job_id)``
    in another process, later, is the same job. ``T`` is the task's return type where the
    caller's code has it (``submit(signature(Math.add, ...))``), else ``Any``.
    """

    __slots__ = ("id", "store")

    def __init__(self, store: ResultStore, job_id: str) -> None:
        self.store = store
        self.id = job_id

    def __repr__(self) -> str:
        return f"<Job {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id and other.store is self.store

    def __hash__(self) -> int:
        return hash(self.id)

    async def record(self) -> JobRecord | None:
        """Everything stored about the job, or ``None`` for an id nobody submitted."""
        return await self.store.get(self.id)

    async def status(self) -> JobState:
        """pending, started, retrying, succeeded, failed, revoked, or unknown."""
        record = await self.store.get(self.id)
        return JobState.UNKNOWN if record is None else record.state

    async def ready(self) -> bool:
        """True once the job is final (succeeded, failed or revoked)."""
        return (await self.status()).final

    async def progress(self) -> Any:
        """What the task last reported with ``current_job().progress(...)``, or ``None``."""
        record = await self.store.get(self.id)
        return None if record is None else decode_value(record.progress)

    async def result(self, timeout: float | None = None) -> T:
        """The task's return value, once it is there (woken by the store, not polling).

        Raises :class:`TaskFailed` (the remote type and message), :class:`TaskRevoked`, or
        :class:`ResultTimeout` after ``timeout`` seconds (the job goes on).
        """
        if timeout is None:
            record = None
            while record is None:
                record = await self.store.wait(self.id, FOREVER_STEP)
        else:
            record = await self.store.wait(self.id, timeout)
            if record is None:
                raise ResultTimeout(self.id, str(await self.status()), timeout)
        value: T = outcome(record)
        return value

    async def revoke(self, reason: str = "revoked") -> bool:
        """Revoke the job: a pending one never runs, a running one stops at its next
        ``progress()`` / ``check_revoked()``; ``result()`` raises :class:`TaskRevoked`.

        A group's or chord's members are revoked with it. ``False`` when the job is
        already final or unknown. Unlike a timeout or a shutdown (after which the message
        runs again), a revoked job is over for good.
        """
        return await revoke(self.store, self.id, reason)


def outcome(record: JobRecord) -> Any:
    """The value of a final record, or the exception its state stands for."""
    if record.state is JobState.SUCCEEDED:
        return decode_value(record.result)
    if record.state is JobState.REVOKED:
        raise TaskRevoked(record.id, record.error_message or "revoked")
    raise TaskFailed(record.id, record.error_type or "Error", record.error_message or "")


async def revoke(store: ResultStore, job_id: str, reason: str) -> bool:
    changes = {"finished_at": time.time(), "error_type": "TaskRevoked", "error_message": reason}
    record = await store.transition(job_id, JobState.REVOKED, changes)
    if record is None:
        return False
    for member in record.members:  # a member may be a group or a chord itself
        await revoke(store, member, reason)
    inner = record.meta.get("group")
    if inner is not None:
        await revoke(store, inner, reason)
    return True
