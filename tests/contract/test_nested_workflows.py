"""Nested workflows on every engine: groups and chords inside chains, chains inside groups,
a chord inside a chain — results, one callback per chord, a failure anywhere, a revoke that
reaches nested members, and finished steps delivered again (docs/tasks.md, Workflows)."""

from __future__ import annotations

import asyncio

import pytest

from microhive import JobState, QueueBroker, TaskFailed, TaskRevoked, chain, chord, group

from .helpers import eventually
from .task_agents import Sent, TaskFactory, q

add, mul, xsum = q.add, q.mul, q.xsum


async def drained(broker: QueueBroker) -> bool:
    for name in ("add", "mul", "xsum", "record"):
        if await broker.length(name):
            return False
    return True


async def test_nested_workflows_give_celerys_results(tasks: TaskFactory) -> None:
    sent = Sent()
    broker = await tasks.broker(middleware=[sent])
    await tasks.math("add", "mul", "xsum")
    cases = [
        # a chain, then a group (each member gets 2), then a step: a chord, as in Celery
        (chain(add.s(x=1, y=1), group(add.s(y=1), mul.s(y=3)), xsum.s()), 9),
        # a chain that ends in a group: the list
        (chain(add.s(x=1, y=1), group(add.s(y=1), mul.s(y=3))), [3, 6]),
        # a group of chains: each member's last result, in order
        (group(chain(add.s(x=1, y=1), mul.s(y=10)), chain(add.s(x=2, y=2), mul.s(y=10))), [20, 40]),
        # a chord whose header holds a chain
        (chord(group(chain(add.s(x=1, y=1), mul.s(y=10)), add.s(x=3, y=3)), xsum.s()), 26),
        # a chord as a step of a chain
        (chain(add.s(x=1, y=1), chord([add.s(y=1), add.s(y=2)], xsum.s()), mul.s(y=10)), 70),
    ]
    jobs = [await broker.submit(workflow) for workflow, _ in cases]
    assert [await job.result(timeout=20) for job in jobs] == [value for _, value in cases]
    await eventually(lambda: drained(broker), timeout=10)
    runs = list(tasks.runs)
    assert tasks.count("xsum") == 3  # each chord's callback once
    # every first message again, as a redelivery after a crash would bring it: finished
    # steps are skipped and what follows them is not enqueued twice
    for envelope in list(sent.messages):
        await broker.send(envelope.name, envelope.payload, headers=envelope.headers)
    await eventually(lambda: drained(broker), timeout=10)
    await asyncio.sleep(0.2)
    assert tasks.runs == runs
    assert [await job.result(timeout=1) for job in jobs] == [value for _, value in cases]


async def test_a_revoke_reaches_nested_members_and_a_failure_fails_the_outer_job(
    tasks: TaskFactory,
) -> None:
    """One agent for both (an agent's start is what takes time on Kafka): the revoke is made
    before it starts, so that nothing revoked has run yet."""
    broker = await tasks.broker()
    job = await broker.submit(
        group(chain(add.s(x=1, y=1), mul.s(y=2)), chord([add.s(x=2, y=2)], xsum.s()))
    )
    # a chain whose last step follows a group: the group is revoked with it, as a chord's
    chord_like = await broker.submit(
        chain(add.s(x=1, y=1), group(mul.s(y=2), mul.s(y=3)), xsum.s())
    )
    assert await job.revoke() is True
    assert await chord_like.revoke() is True
    await tasks.math("add", "mul", "xsum", "broken", "on_error", "record")
    for revoked in (job, chord_like):
        with pytest.raises(TaskRevoked):
            await revoked.result(timeout=10)
    await eventually(lambda: drained(broker), timeout=10)
    await asyncio.sleep(0.2)
    # each chain's first step was sent already (a chain's revoke stops what follows it)
    assert tasks.count("add") <= 2
    assert tasks.count("mul") == 0 and tasks.count("xsum") == 0
    for member in (f"{job.id}.0", f"{job.id}.1", f"{job.id}.1.header", f"{job.id}.1.header.0"):
        assert await broker.job(member).status() is JobState.REVOKED, member
    assert await broker.job(f"{chord_like.id}.1").status() is JobState.REVOKED
    tasks.runs.clear()

    members = group(chain(add.s(x=1, y=1), mul.s(y=2)), q.broken.s(), add.s(x=2, y=2))
    job = await broker.submit(
        chain(chord(members, xsum.s()), q.record.s()), link_error=q.on_error.s(task_name="n")
    )
    with pytest.raises(TaskFailed, match="division by zero") as caught:
        await job.result(timeout=20)
    assert caught.value.remote_type == "ZeroDivisionError"
    called = ("on_error", {"job": job.id, "task_name": "n"})
    await eventually(lambda: called in tasks.runs, timeout=10)
    assert tasks.count("xsum") == 0 and tasks.count("record") == 0
    assert tasks.count("mul") == 1  # the other members still ran
    # a step inside a member chain fails: the group, then the chain around it fail with it
    job = await broker.submit(
        chain(add.s(x=1, y=1), group(chain(mul.s(y=2), xsum.s()), add.s(y=1)), q.record.s())
    )
    with pytest.raises(TaskFailed):
        await job.result(timeout=20)
    assert tasks.count("record") == 0
