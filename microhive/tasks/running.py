"""The worker side of a task: a consumer whose outcome is also written to the result store.

For each message: read the job's record (and skip the job when it is already final: it
was revoked, or this is a redelivery of a finished job — whose workflow is carried on
again, idempotently), run the method with the message's keyword arguments, store the result
or the failure (``retrying`` between attempts), carry the workflow on, and only then settle
the message by the consumer's policy. A crash anywhere before the ack means redelivery.

A job is marked ``started`` when the task first waits for something, not before: a task
that finishes in its first step (most small ones) goes from pending to its final state in
one write, which is what makes a task cost two store operations, not three.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import msgspec
from pydantic import BaseModel

from ..agent.dispatch import (
    cancelled_from_outside,
    describe,
    failure,
    run_with_timeout,
    settle_failure,
)
from ..agent.specs import ConsumerSpec, TaskOptions
from ..broker import Delivery
from ..codecs import JsonCodec
from ..envelope import Envelope
from ..errors import PayloadError, Reject, TaskRevoked
from ..logs import enter_handling, leave_handling
from ..middleware import Handling
from .context import JobContext, enter_job, leave_job
from .continuation import Continuer
from .store import JobRecord, JobState, ResultStore
from .stores import store_for
from .wire import JOB, Continuation

if TYPE_CHECKING:
    from ..agent.agent import MicroAgent
    from ..agent.handlers import Handler


async def run_task(
    agent: MicroAgent, handler: Handler, delivery: Delivery, event: Handling | None
) -> str:
    spec = handler.spec
    assert isinstance(spec, ConsumerSpec) and spec.task is not None
    envelope = delivery.envelope
    if envelope is None:
        reason = f"undecodable message: {delivery.error}"
        agent.log.error("%s (%d bytes); dead-lettered", reason, len(delivery.raw))
        await delivery.dead_letter(reason)
        return "dead-lettered"
    assert agent._broker is not None
    token = enter_handling(handler.name, envelope)
    try:
        store = store_for(agent._broker)
        run = _Run(agent, handler, spec, spec.task, delivery, envelope, store)
        return await run.go(event)
    finally:
        leave_handling(token)


class _Run:
    """One delivery of one task message."""

    def __init__(
        self,
        agent: MicroAgent,
        handler: Handler,
        spec: ConsumerSpec,
        options: TaskOptions,
        delivery: Delivery,
        envelope: Envelope,
        store: ResultStore,
    ) -> None:
        self.agent = agent
        self.handler = handler
        self.spec = spec
        self.options = options
        self.delivery = delivery
        self.envelope = envelope
        self.store = store
        self.job = envelope.headers.get(JOB) or envelope.id
        assert agent._broker is not None
        self.continuer = Continuer(agent._broker, store, agent.name)
        self.rest = Continuation.of({})
        self.started = 0.0
        self.marking: asyncio.Future[Any] | None = None  # the ``started`` write, once it waits

    async def go(self, event: Handling | None) -> str:
        try:
            self.rest = Continuation.of(self.envelope.headers)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return await self.refuse(f"invalid task headers: {exc}")
        try:
            record = await self.start()
            if record.state.final:  # revoked before it ran, or done before a crash: carry on
                await self.continuer.after(record, self.rest)
                await self.delivery.ack()
                return "skipped"
            if self.options.rate is not None and await self.over_rate(*self.options.rate):
                return "rate-limited"
        except BaseException as caught:
            if cancelled_from_outside(caught):  # shutdown before the method ran: give it back
                await asyncio.shield(self.delivery.release())
            raise
        try:
            call = self.prepare()
        except Exception as exc:
            return await self.refuse(f"invalid payload: {describe(exc)}", exc)
        context = JobContext(
            self.store, self.job, self.spec.queue.name, self.envelope.attempt, self.options.ttl
        )
        token = enter_job(context)
        try:
            value = await run_with_timeout(self.handler, self.spec.timeout, call, self.waiting)
        except BaseException as caught:
            if cancelled_from_outside(caught):  # shutdown: the message runs again later
                if self.marking is not None:
                    self.marking.cancel()
                await asyncio.shield(self.delivery.release())
                raise
            await self.marked()
            error = failure(caught)
            if isinstance(error, TaskRevoked) and error.job_id == self.job:
                return await self.finished(None)
            if event is not None:
                event.error = error
            await self.agent._error_hooks(self.handler, error, self.envelope)
            return await self.failed(error)
        finally:
            leave_job(token)
        await self.marked()
        try:
            data = encode_result(value, self.options.max_result_size)
        except PayloadError as exc:
            return await self.failed(Reject(f"result cannot be stored: {exc}"))
        changes = {"result": data, "finished_at": time.time(), **self.run_fields()}
        return await self.finished(
            await self.store.transition(self.job, JobState.SUCCEEDED, changes, ttl=self.options.ttl)
        )

    async def start(self) -> JobRecord:
        """The job's record before this run: read, because a job revoked (or finished)
        meanwhile must not run. Made here, started, when the sender wrote none, or its write
        is still on the way."""
        now = self.started = time.time()
        for _ in range(2):  # a submitter's create racing ours: then that record is the one
            found = await self.store.get(self.job)
            if found is not None:
                return found
            made = JobRecord(
                id=self.job,
                queue=self.spec.queue.name,
                state=JobState.STARTED,
                attempt=self.envelope.attempt,
                created_at=self.envelope.sent_at,
                started_at=now,
            )
            if await self.store.create(made, ttl=self.options.ttl):
                return made
        return await self.store.get(self.job) or made

    def run_fields(self) -> dict[str, Any]:
        """What every write of this run says of it."""
        return {"attempt": self.envelope.attempt, "started_at": self.started}

    def waiting(self) -> None:
        """The task waits for something (its first step is done): now mark it started."""
        transition = self.store.transition(
            self.job, JobState.STARTED, self.run_fields(), ttl=self.options.ttl
        )
        self.marking = asyncio.ensure_future(transition)

    async def marked(self) -> None:
        """The ``started`` write is through (before the final one, which would otherwise
        have to merge onto it); a failure of it is the final write's to tell."""
        marking, self.marking = self.marking, None
        if marking is None:
            return
        try:
            await marking
        except Exception as exc:
            self.agent.log.warning("job %s: could not mark it started: %s", self.job, exc)

    async def over_rate(self, limit: int, period: float) -> bool:
        """Past this window's share of starts: back to pending, sent again for the next window.

        The count is a join set per window in the store (one member per job, so a
        redelivered job counts once): the ``limit + 1``-th member makes it complete.
        """
        if not self.agent._broker or not self.agent._broker.capabilities.delayed_delivery:
            return False  # nothing could hold the job back until the next window
        now = self.started  # the started_at of the record: its window is the one it counts in
        window = int(now // period)
        key = f"rate:{self.spec.queue.name}:{window}"
        if not await self.store.join(key, self.job, limit + 1, ttl=period * 2):
            return False
        await self.store.transition(self.job, JobState.PENDING, {}, ttl=self.options.ttl)
        envelope = self.envelope
        assert self.agent._broker is not None
        await self.agent._broker.send(
            self.spec.queue,
            envelope.payload,
            delay=(window + 1) * period - now,
            headers=envelope.headers,
            sender=envelope.sender,
        )
        await self.delivery.ack()
        return True

    def prepare(self) -> Any:
        payload = self.envelope.payload
        if not isinstance(payload, dict):
            raise TypeError(
                f"task arguments are a JSON object of keywords, not {type(payload).__name__}"
            )
        schema = self.spec.queue.schema
        if schema is not None:
            payload = dict(schema.model_validate(payload))
        if problem := self.handler.parameters.misfit(payload):
            raise TypeError(f"arguments do not fit {self.handler.name}: {problem}")
        return self.handler.function(self.agent, **payload)

    async def finished(self, record: JobRecord | None) -> str:
        """The job is final (this run's write, or one before it: a revoke): carry on, ack."""
        if record is None:
            record = await self.store.get(self.job)
        if record is not None:
            await self.continuer.after(record, self.rest)
        await self.delivery.ack()
        return "acked"

    async def failed(self, error: Exception) -> str:
        """Store the failure (``retrying`` while attempts remain), then settle the message."""
        attempts = self.spec.retries + 1
        changes: dict[str, Any] = {
            "error_type": type(error).__name__,
            "error_message": str(error),
            **self.run_fields(),
        }
        ttl = self.options.ttl
        if not isinstance(error, Reject) and self.envelope.attempt < attempts:
            await self.store.transition(self.job, JobState.RETRYING, changes, ttl=ttl)
        else:
            if isinstance(error, Reject):
                changes["error_message"] = error.reason
            changes["finished_at"] = time.time()
            record = await self.store.transition(self.job, JobState.FAILED, changes, ttl=ttl)
            record = record or await self.store.get(self.job)
            if record is not None:
                await self.continuer.after(record, self.rest)
            if not self.spec.dead_letter:  # the failure is kept in the store: that is enough
                tries = self.envelope.attempt
                self.agent.log.error(
                    "job %s failed after %d attempt%s: %s",
                    self.job,
                    tries,
                    "s" if tries > 1 else "",
                    describe(error),
                    exc_info=error if not isinstance(error, Reject | TimeoutError) else None,
                )
                await self.delivery.ack()
                return "failed"
        return await settle_failure(self.agent, self.spec, self.delivery, self.envelope, error)

    async def refuse(self, reason: str, exc: Exception | None = None) -> str:
        """Bad input: the job fails with the reason, the message goes to the dead letters."""
        self.agent.log.error("%s; dead-lettered", reason)
        changes: dict[str, Any] = {
            "error_type": type(exc).__name__ if exc is not None else "PayloadError",
            "error_message": reason,
            "finished_at": time.time(),
        }
        record = await self.store.transition(self.job, JobState.FAILED, changes)
        if record is None and await self.store.get(self.job) is None:
            record = JobRecord(
                id=self.job, queue=self.spec.queue.name, state=JobState.FAILED, **changes
            )
            await self.store.create(record)
        if record is not None:
            await self.continuer.after(record, self.rest)
        await self.delivery.dead_letter(reason)
        return "dead-lettered"


_codecs: dict[int, JsonCodec] = {}


def encode_result(value: Any, limit: int) -> bytes:
    """The result as JSON bytes; :class:`PayloadError` when it cannot be or is too big."""
    codec = _codecs.get(limit)
    if codec is None:
        codec = _codecs[limit] = JsonCodec(limit)
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    # a right-sized copy: many of orjson's shrunk buffers held at once fragment the heap
    # (see microhive/transports/memory/queues.py)
    return bytes(memoryview(codec.encode_value(value)))
