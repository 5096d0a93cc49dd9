"""Where a job's state and result live: one small interface, one implementation per engine.

A :class:`ResultStore` keeps one :class:`JobRecord` per job id. Everything a task, a caller
waiting for a result, a workflow step or the console needs goes through these few atomic
operations, so the semantics are written once here and each engine only has to make them
atomic (Redis: Lua scripts; NATS: key-value revisions; memory: one process).

Rules every implementation keeps (``tests/contract/test_result_stores.py`` checks them):

- ``create`` is create-if-absent: a second create of one id changes nothing and returns
  ``False`` (caller-given job ids de-duplicate a submit this way).
- A *final* state (succeeded, failed, revoked) is written once: ``transition`` on a final
  record changes nothing and returns ``None``. A redelivered task therefore cannot overwrite
  its first result, and callbacks keyed on the winning transition run once.
- ``wait`` returns as soon as the record is final, woken by the engine (no polling loop in
  the caller), or ``None`` when the timeout passes first; a record that does not exist yet
  is waited for too.
- ``join`` is the chord counter: it records ``member`` as finished in ``group`` (idempotent
  per member) and returns ``True`` exactly when the set of finished members reaches
  ``expected``, for every call made once it is complete (so a redelivered last member still
  sees ``True``; the enqueue that follows is made idempotent by a deterministic job id).
- Records and join sets expire ``ttl`` seconds after their last write.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import msgspec


class JobState(enum.StrEnum):
    """Where a job is. ``unknown`` is what a store answers for an id nobody submitted."""

    PENDING = "pending"
    STARTED = "started"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REVOKED = "revoked"
    UNKNOWN = "unknown"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.REVOKED})

DEFAULT_RESULT_TTL = 24 * 3600.0
"""How long a record is kept after its last write, unless the task or the store says otherwise."""

DEFAULT_MAX_RESULT_SIZE = 1024 * 1024
"""A result bigger than this once encoded fails its task with that reason."""


class JobRecord(msgspec.Struct, kw_only=True):
    """Everything known about one job. ``result`` and ``progress`` are encoded JSON bytes.

    Stored as msgspec JSON (``encode_record`` / ``decode_record``); the layout is part of
    docs/wire-format.md, so a service without microhive can read a result.
    """

    id: str
    queue: str
    state: JobState = JobState.PENDING
    result: bytes | None = None
    error_type: str | None = None
    error_message: str | None = None
    progress: bytes | None = None
    attempt: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    members: tuple[str, ...] = ()
    """For a group's job: the member job ids, in order."""
    meta: dict[str, str] = msgspec.field(default_factory=dict)
    """Small strings the task layer keeps beside the state (workflow ids, the revoke reason...)."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(JobRecord)


def encode_record(record: JobRecord) -> bytes:
    return _encoder.encode(record)


def decode_record(data: bytes) -> JobRecord:
    return _decoder.decode(data)


class ResultStore(ABC):
    """One engine's keeper of job records. Open one with ``open_store`` (see ``stores``)."""

    @abstractmethod
    async def create(
        self, record: JobRecord, *, ttl: float = DEFAULT_RESULT_TTL, awaited: bool = False
    ) -> bool:
        """Store ``record`` unless its id exists; ``True`` when this call created it.

        ``awaited``: this process will likely wait for the result (``submit`` says so of the
        job it hands back); a store may arrange a cheaper wake-up for it than for any job.
        """

    @abstractmethod
    async def get(self, job_id: str) -> JobRecord | None:
        """The record, or ``None`` for an id nobody submitted (or one that expired)."""

    @abstractmethod
    async def transition(
        self,
        job_id: str,
        state: JobState | None,
        changes: Mapping[str, Any] | None = None,
        *,
        ttl: float = DEFAULT_RESULT_TTL,
    ) -> JobRecord | None:
        """Set ``state`` (``None``: keep it) and the ``changes`` (JobRecord field names).

        Returns the record as written, or ``None`` when the record is missing or already final
        (nothing is written then). Waiters are woken when the new state is final.
        """

    @abstractmethod
    async def wait(self, job_id: str, timeout: float) -> JobRecord | None:
        """The record once final, or ``None`` if it is not final within ``timeout`` seconds."""

    @abstractmethod
    async def join(
        self, group: str, member: str, expected: int, *, ttl: float = DEFAULT_RESULT_TTL
    ) -> bool:
        """Mark ``member`` of ``group`` finished; ``True`` once ``expected`` members are."""

    @abstractmethod
    async def jobs(
        self, queue: str | None = None, state: JobState | None = None, limit: int = 100
    ) -> list[JobRecord]:
        """Recent records, newest first, optionally of one queue and one state (the console)."""

    async def close(self) -> None:  # noqa: B027 - most stores have nothing to release
        """Release connections the store opened itself."""
