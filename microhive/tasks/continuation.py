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
from .nesting import group_record, pending_records
from .store import JobRecord, JobState, ResultStore
from .submit import bounded
from .wire import Continuation, GroupInfo, Step, headers_for

if TYPE_CHECKING:
    from ..broker import QueueBroker

log = logging.getLogger("microhive.tasks")

ENQUEUED = "enqueued"
"""Meta key set on a step's record once its message is sent."""


class Continuer:
    """Carries a final job's workflow on, on one broker and its store (``delay``: the
    submitter's, for the first messages of a nested workflow)."""

    def __init__(
        self,
        broker: QueueBroker,
        store: ResultStore,
        sender: str = "",
        *,
        delay: float | None = None,
    ) -> None:
        self.broker = broker
        self.store = store
        self.sender = sender
        self.delay = delay

    async def after(self, record: JobRecord, rest: Continuation) -> None:
        """Everything that follows ``record`` (final) in its workflow.

        Success: the links, then the next step of the chain — or, at the chain's end, the
        join of the group the chain is a member of. Failure: the chain's last job fails
        with this error, and that failure joins the group."""
        if record.state is JobState.SUCCEEDED:
            value = decode_value(record.result)
            for step in rest.link:
                await self.enqueue(step, value)
            if rest.chain:
                await self.launch(rest.chain[0], value, rest.chain[1:], rest.group)
                return
        else:
            if record.state is JobState.FAILED:
                for step in rest.link_error:
                    await self.enqueue(step, record.id)
            if rest.chain:
                record = await self.fail(rest.chain[-1], record)
        group = rest.group
        if group is not None and await self.store.join(group.id, record.id, group.size):
            await self.finish_group(group)

    async def launch(
        self, step: Step, value: Any, chain: list[Step], group: GroupInfo | None
    ) -> None:
        """Start ``step`` (a task, or a group of fragments) with ``value``; ``chain`` and
        ``group`` are what follows it."""
        if step.members is None:
            await self.enqueue(step, value, chain, group)
        else:
            await self.launch_group(step, value, chain, group)

    async def enqueue(
        self,
        step: Step,
        value: Any,
        chain: list[Step] | None = None,
        group: GroupInfo | None = None,
    ) -> None:
        """Send ``step`` with ``value`` in its left-out argument, once."""
        store = self.store
        record = JobRecord(id=step.job, queue=step.queue, created_at=time.time())
        if not await store.create(record):
            found = await store.get(step.job)
            if found is None or ENQUEUED in found.meta:
                return  # expired, or sent already (it may be running or done)
            if found.state.final:  # revoked (or failed) before it was sent: carry that on
                rest = Continuation(
                    chain=chain or [], group=group, link=step.link, link_error=step.link_error
                )
                await self.after(found, rest)
                return
            if found.state is not JobState.PENDING:
                return  # started: sent, its mark lost
            record = found
        arguments = dict(step.args)
        if step.fill is not None:
            arguments[step.fill] = value
        headers = headers_for(
            step.job, chain=chain, group=group, link=step.link, link_error=step.link_error
        )
        try:
            queue = self.broker.declaration(step.queue)
            await self.broker.send(
                queue, arguments, delay=self.delay, headers=headers, sender=self.sender
            )
        except PayloadError as exc:  # the value does not fit the next task's arguments
            log.error("could not enqueue job %s on %r: %s", step.job, step.queue, exc)
            failed = await self.settle(step, JobState.FAILED, "PayloadError", str(exc))
            rest = Continuation(chain=chain or [], group=group, link_error=step.link_error)
            await self.after(failed, rest)
            return
        meta = {**record.meta, ENQUEUED: "1"}
        await store.transition(step.job, None, {"meta": meta})

    async def launch_group(
        self, step: Step, value: Any, chain: list[Step], group: GroupInfo | None
    ) -> None:
        """A group inside a workflow: its record, then each member's first step with
        ``value``, once (a record marked enqueued is not launched again)."""
        store = self.store
        members = step.members or []
        info = GroupInfo(
            id=step.job,
            size=len(members),
            then=chain[0] if chain else None,
            chain=chain[1:],
            group=group,
        )
        now = time.time()
        record = group_record(step, now)
        if not await store.create(record):
            found = await store.get(step.job)
            if found is None or ENQUEUED in found.meta:
                return
            if found.state.final:  # revoked (or failed) before it was launched
                await self.after(found, following(info))
                return
            record = found  # written by the submitter, or a launch that died half-way
        if not members:  # nothing to wait for: the empty list, at once
            changes = {"result": b"[]", "finished_at": now}
            done = await store.transition(step.job, JobState.SUCCEEDED, changes)
            done = done or await store.get(step.job)
            if done is not None:
                await self.after(done, following(info))
            return

        async def start(member: list[Step]) -> None:
            if len(member) > 1:  # a chain: its last job's record first, for a revoke to find
                for made in pending_records(member, now):
                    await store.create(made)
            await self.launch(member[0], value, member[1:], info)

        await bounded(start(member) for member in members)
        await store.transition(step.job, None, {"meta": {**record.meta, ENQUEUED: "1"}})

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

    async def fail(self, final: Step, cause: JobRecord) -> JobRecord:
        """A step before ``final`` (a chain's last, a chord's callback) failed or was revoked:
        so is ``final``, with the cause's error; its ``link_error`` callbacks follow. The
        record of ``final`` as it is now."""
        state = JobState.REVOKED if cause.state is JobState.REVOKED else JobState.FAILED
        record = await self.settle(
            final, state, cause.error_type or "Error", cause.error_message or "", cause=cause.id
        )
        if record.state is JobState.FAILED:
            for step in final.link_error:
                await self.enqueue(step, final.job)
        return record

    async def finish_group(self, group: GroupInfo) -> None:
        """Every member is final: the group's result (or its first failure), then what
        follows the group (a chord's callback, the rest of a chain, an outer group)."""
        members = [f"{group.id}.{index}" for index in range(group.size)]
        records: list[JobRecord | None] = await bounded(self.store.get(m) for m in members)
        index = next(
            (i for i, r in enumerate(records) if r is None or r.state is not JobState.SUCCEEDED),
            None,
        )
        step = Step(queue="", job=group.id)
        if index is None:
            parts = [r.result or b"null" for r in records if r is not None]
            result = b"[" + b",".join(parts) + b"]"
            now = time.time()
            changes = {"result": result, "finished_at": now}
            done = await self.store.transition(group.id, JobState.SUCCEEDED, changes)
            record = done or await self.store.get(group.id)
            if record is None:  # expired: carry the result on all the same
                record = JobRecord(
                    id=group.id, queue="", state=JobState.SUCCEEDED, result=result, finished_at=now
                )
        else:
            bad = records[index]
            if bad is None or not bad.state.final:  # expired, or changed behind the join
                bad = JobRecord(
                    id=members[index],
                    queue="",
                    state=JobState.FAILED,
                    error_type="LookupError",
                    error_message=f"member {members[index]} is not final: its record expired?",
                )
            record = await self.settle(
                step, bad.state, bad.error_type or "Error", bad.error_message or "", member=bad.id
            )
        await self.after(record, following(group))


def following(group: GroupInfo) -> Continuation:
    """What comes once ``group`` is final, as a continuation of the group's own job."""
    then = [group.then] if group.then is not None else []
    return Continuation(chain=then + group.chain, group=group.group)
