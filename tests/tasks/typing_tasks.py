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
)
from microhive.sync import Publisher, SyncJob

add_queue = Queue("typing_add", providing_args=["x", "y"])


class Math(MicroAgent):
    @task(add_queue)
    async def add(self, x: int, y: int) -> int:
        return x + y


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
    signature(Math.add, x="one", y=2)  # type: ignore[arg-type]
