"""``current_job()``: the job a running task works on, to report progress or see a revoke."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from contextvars import ContextVar
from typing import Any, TypeVar

from ..codecs import JsonCodec
from ..errors import TaskRevoked
from .store import DEFAULT_MAX_RESULT_SIZE, JobState, ResultStore

T = TypeVar("T")


class JobContext:
    """The job behind the running task: its id, attempt, progress and revoke check."""

    __slots__ = ("abandoned", "attempt", "id", "loop", "queue", "store", "ttl")

    def __init__(
        self, store: ResultStore, job_id: str, queue: str, attempt: int, ttl: float
    ) -> None:
        self.store = store
        self.id = job_id
        self.queue = queue
        self.attempt = attempt
        self.ttl = ttl
        self.loop = asyncio.get_running_loop()
        self.abandoned = False
        """True once the worker stopped waiting for a sync task's thread (timeout, shutdown)."""

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

    # -- from a sync task's thread -------------------------------------------------------

    def progress_sync(self, value: Any) -> None:
        """:meth:`progress` from a sync task (it runs in a thread): blocks until stored.

        Raises :class:`TaskRevoked` as :meth:`progress` does, and ``CancelledError`` once the
        worker abandoned this attempt (timeout, shutdown): the thread's own cancellation, as
        a thread cannot be cancelled from outside."""
        self._blocking(self.progress(value))

    def check_revoked_sync(self) -> None:
        """:meth:`check_revoked` from a sync task; also raises ``CancelledError`` once the
        worker abandoned this attempt (timeout, shutdown), as :meth:`progress_sync` does."""
        self._blocking(self.check_revoked())

    def abandon(self) -> None:
        self.abandoned = True

    def _blocking(self, call: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            call.close()
            raise RuntimeError("the *_sync methods are for sync tasks' threads: await the others")
        if self.abandoned:
            call.close()
            raise asyncio.CancelledError(f"job {self.id}: the worker abandoned this attempt")
        return asyncio.run_coroutine_threadsafe(call, self.loop).result()


_CURRENT: ContextVar[JobContext | None] = ContextVar("microhive_job", default=None)


def current_job() -> JobContext:
    """The job of the ``@task`` running in this asyncio task (or in this sync task's thread)."""
    job = _CURRENT.get()
    if job is None:
        raise RuntimeError("current_job() is only available while a @task runs")
    return job


def enter_job(job: JobContext) -> Any:
    return _CURRENT.set(job)


def leave_job(token: Any) -> None:
    _CURRENT.reset(token)
