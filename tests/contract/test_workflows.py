"""Workflows: group, chain, chord, link and link_error — results, failures, refusals.

The seed's canvas calls, translated: ``group(add.s(i, i) for i in range(10))``,
``chain(add.s(4, 4) | mul.s(8))``, ``chord(group(...), xsum.s())``, ``link_error=``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from microhive import (
    ConfigurationError,
    JobState,
    PayloadError,
    TaskFailed,
    TaskRevoked,
    TransportError,
    chain,
    chord,
    group,
)
from microhive.tasks.continuation import Continuer
from microhive.tasks.wire import CHAIN, JOB, Step

from .helpers import eventually
from .task_agents import TaskFactory, q

add, mul, xsum = q.add, q.mul, q.xsum


async def test_group_chain_and_chord_as_in_the_seed(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    await tasks.math("add", "mul", "xsum")
    job = await broker.submit(group(add.s(x=i, y=i) for i in range(10)))
    assert await job.result(timeout=10) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    job = await broker.submit(chain(add.s(x=4, y=4), mul.s(y=8)))
    assert await job.result(timeout=10) == 64
    job = await broker.submit(add.s(x=4, y=4) | mul.s(y=8) | mul.s(x=2))
    assert await job.result(timeout=10) == 128
    job = await broker.submit(chord(group(add.s(x=i, y=i) for i in range(10)), xsum.s()))
    assert await job.result(timeout=10) == 90
    assert tasks.count("xsum") == 1
    assert await (await broker.submit(group())).result(timeout=1) == []


async def test_signatures_from_broker_handles(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    await tasks.math("add", "mul")
    job = await broker.submit(chain(broker.add.s(x=1, y=2), broker.queue("mul").s(y=3)))
    assert await job.result(timeout=10) == 9


async def test_a_group_with_a_failed_member_fails_with_its_error(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    await tasks.math("add", "broken")
    job = await broker.submit(group(add.s(x=1, y=1), q.broken.s(), add.s(x=2, y=2)))
    with pytest.raises(TaskFailed, match="division by zero") as caught:
        await job.result(timeout=10)
    assert caught.value.remote_type == "ZeroDivisionError"
    record = await job.record()
    assert record is not None and len(record.members) == 3
    assert await broker.job(record.members[0]).result(timeout=1) == 2  # the others finished


async def test_a_failed_chain_step_fails_the_chain(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    await tasks.math("broken", "record")
    job = await broker.submit(chain(q.broken.s(), q.record.s()))
    with pytest.raises(TaskFailed, match="division by zero"):
        await job.result(timeout=10)
    assert tasks.count("record") == 0


async def test_a_chord_with_a_failed_member_never_calls_back(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    await tasks.math("add", "broken", "record")
    job = await broker.submit(chord([add.s(x=1, y=1), q.broken.s()], q.record.s()))
    with pytest.raises(TaskFailed, match=r"ZeroDivisionError|division by zero"):
        await job.result(timeout=10)
    assert tasks.count("record") == 0


async def test_link_gets_the_result_and_link_error_the_failed_job_id(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    await tasks.math("add", "record", "broken", "on_error")
    ok = await broker.add.submit(x=2, y=3, link=q.record.s())
    assert await ok.result(timeout=10) == 5
    await eventually(lambda: ("record", {"value": 5}) in tasks.runs, timeout=10)
    bad = await broker.broken.submit(link_error=q.on_error.s(task_name="broken_task"))
    with pytest.raises(TaskFailed):
        await bad.result(timeout=10)
    called = ("on_error", {"job": bad.id, "task_name": "broken_task"})
    await eventually(lambda: called in tasks.runs, timeout=10)
    # a chain's link_error follows its failure wherever it happens
    failing = await broker.submit(
        chain(q.broken.s(), q.record.s()), link_error=q.on_error.s(task_name="chain")
    )
    with pytest.raises(TaskFailed):
        await failing.result(timeout=10)
    called = ("on_error", {"job": failing.id, "task_name": "chain"})
    await eventually(lambda: called in tasks.runs, timeout=10)


async def test_badly_built_workflows_are_refused_at_the_sender(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    with pytest.raises(PayloadError, match=r"step 1 of a chain.*leaves none out"):
        chain(add.s(x=1, y=1), mul.s(x=2, y=3))
    with pytest.raises(PayloadError, match=r"leaves \['x', 'y'\] out"):
        chain(add.s(x=1, y=1), mul.s())
    with pytest.raises(PayloadError, match="chord's callback"):
        chord(group(add.s(x=1, y=1)), xsum.s(numbers=[]))
    with pytest.raises(PayloadError, match="does not declare its arguments"):
        chain(add.s(x=1, y=1), q.loose.s())
    with pytest.raises(PayloadError, match=r"missing \['y'\]"):
        await broker.submit(group(add.s(x=1)))  # a group alone: its members wait for nothing
    with pytest.raises(PayloadError, match="link"):
        await broker.add.submit(x=1, y=1, link=q.on_error.s())
    with pytest.raises(ConfigurationError, match="group"):
        await broker.submit(group(add.s(x=1, y=1)), link=q.record.s())
    with pytest.raises(PayloadError, match="all run without a value"):
        group(add.s(x=1, y=1), add.s(x=1))  # one member complete, one waiting for a value
    assert await broker.length("add") == 0


async def test_a_redelivered_finished_step_is_skipped_and_the_chain_goes_on_once(
    tasks: TaskFactory,
) -> None:
    """A worker that died after storing a step's result but before its ack: the message
    comes again. The step does not run again, and the next step is enqueued only once."""
    broker = await tasks.broker()
    await tasks.math("add", "record")
    job = await broker.submit(chain(add.s(x=1, y=1), q.record.s()))
    assert await job.result(timeout=10) == 2
    record = await job.record()
    assert record is not None
    first = record.meta["first"]
    from microhive.tasks.submit import step_of
    from microhive.tasks.wire import encode

    rest = encode([step_of(q.record.s(), job.id, "step 1 of a chain")])
    await broker.send("add", {"x": 1, "y": 1}, headers={JOB: first, CHAIN: rest})
    await eventually(lambda: _drained(broker, "add"), timeout=10)
    await eventually(lambda: _drained(broker, "record"), timeout=10)
    await asyncio.sleep(0.2)
    assert tasks.count("add") == 1
    assert tasks.count("record") == 1


async def test_a_next_step_that_could_not_be_sent_is_sent_again(
    tasks: TaskFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine fails as the worker sends a chain's next step (the worker's own queue
    message is still unsettled): that message is given back and delivered again, the step
    is not run again, and the next one is sent then — the chain finishes. Held by the
    worker until it stops, it used to stall the workflow."""
    failing = {"record": 1}
    enqueue = Continuer.enqueue

    async def flaky(self: Continuer, step: Step, *args: Any, **kwargs: Any) -> None:
        if failing.get(step.queue):
            failing[step.queue] -= 1
            raise TransportError(f"sending to {step.queue!r} failed (the test's outage)")
        await enqueue(self, step, *args, **kwargs)

    monkeypatch.setattr(Continuer, "enqueue", flaky)
    broker = await tasks.broker()
    await tasks.math("add", "record")
    job = await broker.submit(chain(add.s(x=1, y=1), q.record.s()))
    assert await job.result(timeout=30) == 2
    assert failing == {"record": 0}
    assert tasks.count("add") == 1
    assert tasks.count("record") == 1


async def _drained(broker: object, queue: str) -> bool:
    return await broker.length(queue) == 0  # type: ignore[attr-defined, no-any-return]


async def test_the_chord_callback_runs_once_with_several_workers(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    # started together: on Kafka they join each group in one rebalance, not one each
    await asyncio.gather(*(tasks.math("add", "xsum") for _ in range(3)))
    jobs = [
        await broker.submit(chord(group(add.s(x=i, y=n) for i in range(20)), xsum.s()))
        for n in range(5)
    ]
    assert [await job.result(timeout=20) for job in jobs] == [190 + 20 * n for n in range(5)]
    await asyncio.sleep(0.2)
    assert tasks.count("xsum") == 5
    assert tasks.count("add") == 100


async def test_revoking_a_chord_revokes_its_members(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    job = await broker.submit(chord(group(add.s(x=i, y=i) for i in range(3)), xsum.s()))
    assert await job.revoke() is True
    await tasks.math("add", "xsum")
    with pytest.raises(TaskRevoked):
        await job.result(timeout=5)
    await eventually(lambda: _drained(broker, "add"), timeout=10)
    assert tasks.count("add") == 0 and tasks.count("xsum") == 0
    inner = await job.record()
    assert inner is not None
    assert await broker.job(inner.meta["group"]).status() is JobState.REVOKED
