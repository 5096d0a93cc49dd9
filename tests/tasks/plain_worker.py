"""A module with a ``tasks_agent`` class and a plain task no class runs: what
``microhive run tests.tasks.plain_worker`` loads (tests/tasks/test_plain.py)."""

from __future__ import annotations

from microhive import Namespace, Queue, task, tasks_agent

from .plain_tasks import add

QUEUES = Namespace(
    [Queue("plain_double", providing_args=["x"]), Queue("plain_triple", providing_args=["x"])],
    kind="queue",
)


@task(QUEUES.plain_double)
def double(x: int) -> int:
    return 2 * x


@task(QUEUES.plain_triple)
async def triple(x: int) -> int:
    return 3 * x


Worker = tasks_agent("Arithmetic", add, double)
