"""Submitting a signature or a workflow: records first, then messages, from the caller.

The caller writes the record of the job it hands back (create-if-absent: a caller-given
``job_id`` that exists already de-duplicates the submit, nothing is sent) and sends the
first messages; every later step is enqueued by the worker that ran the step before.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict

from ..envelope import new_id
from ..errors import ConfigurationError, PayloadError
from .canvas import Chain, Chord, Group, Signature, Workflow, callbacks
from .job import Job
from .nesting import is_nested, submit_nested
from .store import JobRecord, JobState, ResultStore
from .stores import store_for
from .wire import GroupInfo, Step, headers_for

if TYPE_CHECKING:
    from ..broker import QueueBroker

Callbacks = Signature[Any] | Iterable[Signature[Any]] | None


class SubmitOptions(TypedDict, total=False):
    """``submit``'s own keyword options (no task argument may use these names)."""

    delay: float | None
    at: datetime | float | None
    job_id: str | None
    link: Callbacks
    link_error: Callbacks
    sender: str


CONCURRENCY = 64
"""Store writes and sends a group's submit keeps in flight at once."""

MAX_JOB_ID = 200


def check_job_id(job_id: str | None) -> str:
    if job_id is None:
        return new_id()
    if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_JOB_ID:
        raise ConfigurationError(f"job_id must be a non-empty string of at most {MAX_JOB_ID}")
    if job_id.strip() != job_id or any(c in job_id for c in "\r\n\0"):
        raise ConfigurationError(f"job_id {job_id!r}: no surrounding spaces or control characters")
    return job_id


def eta(delay: float | None, at: datetime | float | None) -> float | None:
    """Seconds to wait before the first step runs (``delay=`` or ``at=``, not both)."""
    if at is None:
        return delay
    if delay is not None:
        raise ConfigurationError("give delay= or at=, not both")
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ConfigurationError("at= needs an aware datetime (with tzinfo), e.g. UTC")
        moment = at.timestamp()
    elif isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at):
        moment = float(at)
    else:
        raise ConfigurationError(f"at= is a datetime or a Unix time, not {at!r}")
    return max(0.0, moment - time.time())


def step_of(signature: Signature[Any], job: str, role: str | None = None) -> Step:
    """A signature as the wire's step; ``role``: it waits for a value, in its left-out slot."""
    fill = signature.slot(role) if role is not None else None
    return Step(queue=signature.name, job=job, args=dict(signature.arguments), fill=fill)


def callback_steps(given: Callbacks, job: str, role: str) -> list[Step]:
    if given is None:
        return []
    suffix = "link" if role == "link" else "error"
    return [
        step_of(signature, f"{job}.{suffix}{index}", role)
        for index, signature in enumerate(callbacks(given, role))
    ]


async def bounded(calls: Iterable[Awaitable[Any]]) -> list[Any]:
    """Await ``calls`` with at most :data:`CONCURRENCY` in flight, results in order."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(call: Awaitable[Any]) -> Any:
        async with gate:
            return await call

    return await asyncio.gather(*(one(call) for call in calls))


SENT = "sent"
"""Meta key a submit with a caller-given ``job_id`` sets on the record of the job it sent (a
signature's, a chain's first step's) once the message is out."""


async def sends(
    store: ResultStore, record: JobRecord, first: str, given: bool, *, missing: bool
) -> bool:
    """Whether this submit sends ``first``'s message: it wrote ``record``, or (a caller-given
    id that exists already) the submit that wrote it died before its message went out
    (``missing``: what it means that ``first`` has no record)."""
    if await store.create(record, awaited=True):
        return True
    if not given:
        return False
    found = await store.get(first)
    if found is None:
        return missing
    return found.state is JobState.PENDING and SENT not in found.meta


async def mark_sent(store: ResultStore, job: str, given: bool) -> None:
    if not given:  # a fresh id is never submitted again: nothing to tell a later submit
        return
    found = await store.get(job)
    if found is not None and not found.state.final and SENT not in found.meta:
        await store.transition(job, None, {"meta": {**found.meta, SENT: "1"}})


async def submit(
    broker: QueueBroker,
    target: Signature[Any] | Workflow,
    *,
    delay: float | None = None,
    at: datetime | float | None = None,
    job_id: str | None = None,
    link: Callbacks = None,
    link_error: Callbacks = None,
    sender: str = "",
) -> Job[Any]:
    job = check_job_id(job_id)
    wait = eta(delay, at)
    links = callback_steps(link, job, "link")
    errors = callback_steps(link_error, job, "link_error")
    store = store_for(broker)
    now = time.time()

    async def send(step: Signature[Any], headers: dict[str, str], payload: Any = None) -> None:
        payload = step.complete() if payload is None else payload
        await broker.send(step.queue, payload, delay=wait, headers=headers, sender=sender)

    if isinstance(target, Chain) and len(target.steps) == 1:
        target = target.steps[0]
    if isinstance(target, Chain | Group | Chord) and is_nested(target):
        await submit_nested(
            broker, store, target, job, delay=wait, link=links, link_error=errors, sender=sender
        )
        return Job(store, job)
    if isinstance(target, Signature):
        payload = target.complete()
        record = JobRecord(id=job, queue=target.name, created_at=now)
        headers = headers_for(job, link=links, link_error=errors)
        if await sends(store, record, job, job_id is not None, missing=False):
            await send(target, headers, payload)
            await mark_sent(store, job, job_id is not None)
    elif isinstance(target, Chain):
        first, *rest = flat(target.steps)
        payload = first.complete()
        ids = [f"{job}.{index}" for index in range(len(rest))] + [job]
        steps = [step_of(s, ids[i + 1], f"step {i + 1} of a chain") for i, s in enumerate(rest)]
        steps[-1].link, steps[-1].link_error = links, errors
        record = JobRecord(id=job, queue=steps[-1].queue, created_at=now, meta={"first": ids[0]})
        if await sends(store, record, ids[0], job_id is not None, missing=True):
            await store.create(JobRecord(id=ids[0], queue=first.name, created_at=now))
            await send(first, headers_for(ids[0], chain=steps), payload)
            await mark_sent(store, ids[0], job_id is not None)
    elif isinstance(target, Group):
        if links or errors:
            raise ConfigurationError("link= / link_error= on a group: use a chord's callback")
        members = flat(target.members)
        payloads = [member.complete() for member in members]
        await _submit_group(store, members, payloads, job, None, now, send, awaited=True)
    elif isinstance(target, Chord):
        assert isinstance(target.callback, Signature)  # else it is nested
        then = step_of(target.callback, job, "a chord's callback")
        then.link, then.link_error = links, errors
        members = flat(target.header.members)
        payloads = [member.complete() for member in members]
        inner = f"{job}.header"
        record = JobRecord(id=job, queue=then.queue, created_at=now, meta={"group": inner})
        if await store.create(record, awaited=True):
            await _submit_group(store, members, payloads, inner, then, now, send)
    else:
        raise PayloadError(f"submit takes a signature (queue.s(...)) or a workflow, not {target!r}")
    return Job(store, job)


def flat(nodes: Iterable[Any]) -> list[Signature[Any]]:
    """The steps or members of a flat workflow (:func:`~.nesting.is_nested` said so)."""
    found = list(nodes)
    assert all(isinstance(node, Signature) for node in found)
    return found


async def _submit_group(
    store: ResultStore,
    signatures: list[Signature[Any]],
    payloads: list[Any],
    job: str,
    then: Step | None,
    now: float,
    send: Any,
    *,
    awaited: bool = False,
) -> None:
    """A flat group's records, then its messages (``payloads``: checked before any write)."""
    members = [f"{job}.{index}" for index in range(len(signatures))]
    record = JobRecord(id=job, queue="", created_at=now, members=tuple(members))
    if not await store.create(record, awaited=awaited):
        return
    if not members:  # nothing to wait for: the empty list, at once
        await store.transition(job, JobState.SUCCEEDED, {"result": b"[]", "finished_at": now})
        return
    info = GroupInfo(id=job, size=len(members), then=then)
    await bounded(
        store.create(JobRecord(id=member, queue=signature.name, created_at=now))
        for member, signature in zip(members, signatures, strict=True)
    )
    await bounded(
        send(signature, headers_for(member, group=info), payload)
        for member, signature, payload in zip(members, signatures, payloads, strict=True)
    )
