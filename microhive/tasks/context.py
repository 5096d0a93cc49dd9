"""``current_job()``: the job a running task works on, to report progress or see a revoke."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from ..codecs import JsonCodec
from ..errors import TaskRevoked
from .store import DEFAULT_MAX_RESULT_SIZE, JobState, ResultStore


class JobContext:
    """The job behind the running task: its id, attempt, progress and revoke check."""

    __slots__ = ("attempt", "id", "queue", "store", "ttl")

    def __init__(
        self, store: ResultStore, job_id: str, queue: str, attempt: int, ttl: float
    ) -> None:
        self.store = store
        self.id = job_id
        self.queue = queue
        self.attempt = attempt
        self.ttl = ttl

    def __repr__(self) -> str:
        return f"<JobContext {self.id} attempt {self.attempt}>"

    async def progress(self, value: Any) -> None:
        """Store ``value`` (JSON) as the job's progress, visible in ``job.progress()``.

        Raises :class:`TaskRevoked` when the job was revoked meanwhile: a revoke of a
        running task takes effect at its next report (cooperative cancel)."""
        data = JsonCodec(DEFAULT_MAX_RESULT_SIZE).encode_value(value)
        changes = {"progress": data}  # a task that reports progress has started
        if await self.store.transition(self.id, JobState.STARTED, changes, ttl=self.ttl) is None:
            await self.check_revoked()

    async def revoked(self) -> bool:
        record = await self.store.get(self.id)
        return record is not None and record.state is JobState.REVOKED

    async def check_revoked(self) -> None:
        """Raise :class:`TaskRevoked` if someone revoked this job: a place to stop."""
        record = await self.store.get(self.id)
        if record is not None and record.state is JobState.REVOKED:
            raise TaskRevoked(self.id, record.error_message or "revoked")


_CURRENT: ContextVar[JobContext | None] = ContextVar("microhive_job", default=None)


def current_job() -> JobContext:
    """The job of the ``@task`` running in this asyncio task."""
    job = _CURRENT.get()
    if job is None:
        raise RuntimeError("current_job() is only available while a @task runs")
    return job


def enter_job(job: JobContext) -> Any:
    return _CURRENT.set(job)


def leave_job(token: Any) -> None:
    _CURRENT.reset(token)
