"""What happens after a job is final: callbacks, the next chain step, the group's join.

Run by the worker before it acknowledges the job's message, and run again, unchanged, when
that message is redelivered (the worker died in between) or when a job already final is
delivered again: every write here is idempotent. Enqueued steps have deterministic job ids
and are sent only while their record is pending and not yet marked enqueued, so a redelivered
step does not start the next one twice, and a chord's callback is enqueued once (the join
says the group is complete; the callback's id is the chord's).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ..errors import PayloadError
from .job import decode_value
from .store import JobRecord, JobState, ResultStore
from .submit import bounded
from .wire import Continuation, GroupInfo, Step, headers_for

if TYPE_CHECKING:
    from ..broker import QueueBroker

log = logging.getLogger("microhive.tasks")

ENQUEUED = "enqueued"
"""Meta key set on a step's record once its message is sent."""


class Continuer:
    """Carries a final job's workflow on, on one broker and its store."""

    def __init__(self, broker: QueueBroker, store: ResultStore, sender: str = "") -> None:
        self.broker = broker
        self.store = store
        self.sender = sender

    async def after(self, record: JobRecord, rest: Continuation) -> None:
        """Everything that follows ``record`` (final) in its workflow."""
        if record.state is JobState.SUCCEEDED:
            value = decode_value(record.result)
            for step in rest.link:
                await self.enqueue(step, value)
            if rest.chain:
                await self.enqueue(rest.chain[0], value, rest.chain[1:])
        else:
            if record.state is JobState.FAILED:
                for step in rest.link_error:
                    await self.enqueue(step, record.id)
            if rest.chain:
                await self.fail(rest.chain[-1], record)
        group = rest.group
        if group is not None and await self.store.join(group.id, record.id, group.size):
            await self.finish_group(group)

    async def enqueue(self, step: Step, value: Any, chain: list[Step] | None = None) -> None:
        """Send ``step`` with ``value`` in its left-out argument, once."""
        store = self.store
        record = JobRecord(id=step.job, queue=step.queue, created_at=time.time())
        if not await store.create(record):
            found = await store.get(step.job)
            if found is None or found.state is not JobState.PENDING or ENQUEUED in found.meta:
                return  # sent already (it may be running or done), revoked, or expired
            record = found
        arguments = dict(step.args)
        if step.fill is not None:
            arguments[step.fill] = value
        headers = headers_for(step.job, chain=chain, link=step.link, link_error=step.link_error)
        try:
            queue = self.broker.declaration(step.queue)
            await self.broker.send(queue, arguments, headers=headers, sender=self.sender)
        except PayloadError as exc:  # the value does not fit the next task's arguments
            log.error("could not enqueue job %s on %r: %s", step.job, step.queue, exc)
            failed = await self.settle(step, JobState.FAILED, "PayloadError", str(exc))
            await self.after(failed, Continuation(chain=chain or [], link_error=step.link_error))
            return
        meta = {**record.meta, ENQUEUED: "1"}
        await store.transition(step.job, None, {"meta": meta})

    async def settle(
        self, step: Step, state: JobState, error_type: str, message: str, **meta: str
    ) -> JobRecord:
        """Make ``step``'s job final with this error (unless it already is); its record."""
        changes: dict[str, Any] = {
            "error_type": error_type,
            "error_message": message,
            "finished_at": time.time(),
        }
        record = await self.store.transition(step.job, state, changes)
        if record is None:
            made = JobRecord(id=step.job, queue=step.queue, state=state, meta=meta, **changes)
            if await self.store.create(made):
                return made
            record = await self.store.get(step.job)
        return record or JobRecord(id=step.job, queue=step.queue, state=state, **changes)

    async def fail(self, final: Step, cause: JobRecord) -> None:
        """A step before ``final`` (a chain's last, a chord's callback) failed or was revoked:
        so is ``final``, with the cause's error; its ``link_error`` callbacks follow."""
        state = JobState.REVOKED if cause.state is JobState.REVOKED else JobState.FAILED
        record = await self.settle(
            final, state, cause.error_type or "Error", cause.error_message or "", cause=cause.id
        )
        if record.state is JobState.FAILED:
            for step in final.link_error:
                await self.enqueue(step, final.job)

    async def finish_group(self, group: GroupInfo) -> None:
        """Every member is final: the group's result (or its first failure), then the
        chord's callback with the list of results."""
        members = [f"{group.id}.{index}" for index in range(group.size)]
        records: list[JobRecord | None] = await bounded(self.store.get(m) for m in members)
        index = next(
            (i for i, r in enumerate(records) if r is None or r.state is not JobState.SUCCEEDED),
            None,
        )
        if index is None:
            parts = [r.result or b"null" for r in records if r is not None]
            result = b"[" + b",".join(parts) + b"]"
            changes = {"result": result, "finished_at": time.time()}
            await self.store.transition(group.id, JobState.SUCCEEDED, changes)
            if group.then is not None:
                await self.enqueue(group.then, decode_value(result))
            return
        bad = records[index]
        if bad is None or not bad.state.final:  # expired, or changed behind the join
            bad = JobRecord(
                id=members[index],
                queue="",
                state=JobState.FAILED,
                error_type="LookupError",
                error_message=f"member {members[index]} is not final: its record expired?",
            )
        step = Step(queue="", job=group.id)
        await self.settle(
            step, bad.state, bad.error_type or "Error", bad.error_message or "", member=bad.id
        )
        if group.then is not None:
            await self.fail(group.then, bad)
