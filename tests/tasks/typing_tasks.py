"""Public task types, pinned with ``assert_type``: checked by mypy in test_typing.py (never run)."""

from __future__ import annotations

from typing import Any, assert_type

from microhive import (
    Job,
    JobState,
    MicroAgent,
    Queue,
    QueueBroker,
    Signature,
    chain,
    group,
    signature,
    task,
    tasks_agent,
)
from microhive.sync import Publisher, SyncJob

add_queue = Queue("typing_add", providing_args=["x", "y"])
mul_queue = Queue("typing_mul", providing_args=["x", "y"])


class Math(MicroAgent):
    @task(add_queue)
    async def add(self, x: int, y: int) -> int:
        return x + y


@task(add_queue)
async def add(x: int, y: int) -> int:
    return x + y


@task(mul_queue)
def mul(x: int, y: int) -> float:
    return x * y * 1.0


Plain = tasks_agent("Plain", add, mul)


async def check_plain(broker: QueueBroker, agent: Math) -> None:
    assert_type(await add(x=1, y=2), int)
    assert_type(mul(x=1, y=2), float)
    assert_type(await agent.add(x=1, y=2), int)
    assert_type(signature(add, x=1, y=2), Signature[int])
    assert_type(signature(mul, x=1, y=2), Signature[float])
    assert_type(await broker.submit(signature(mul, x=1, y=2)), Job[float])
    assert_type(add.s(x=1), Signature[Any])
    assert_type(Plain, type[MicroAgent])
    signature(add, x="one", y=2)  # type: ignore[call-overload]
    signature(mul, x=1)  # type: ignore[call-overload]


async def check(broker: QueueBroker, publisher: Publisher) -> None:
    typed = signature(Math.add, x=1, y=2)
    assert_type(typed, Signature[int])
    job = await broker.submit(typed)
    assert_type(job, Job[int])
    assert_type(await job.result(timeout=3), int)
    assert_type(await job.status(), JobState)
    assert_type(await broker.add.submit(x=1, y=1), Job[Any])
    assert_type(await broker.submit(chain(add_queue.s(x=1, y=1))), Job[Any])
    assert_type(await broker.submit(group([add_queue.s(x=1, y=1)])), Job[Any])
    assert_type(broker.job("id"), Job[Any])
    assert_type(publisher.submit(typed), SyncJob[Any])
    signature(Math.add, x="one", y=2)  # type: ignore[call-overload]
