"""The task workers and the caller that the crash tests run as real processes.

``microhive run tests.tasks.crash_agents:Worker --transport URL`` runs the tasks; each run
appends ``<task> <job id>`` to ``$MH_TEST_RECORD.<pid>`` before it returns (so a SIGKILL
never hides a run). ``python -m tests.tasks.crash_agents URL SIZE PAUSE`` submits a chord,
a chain and a nested workflow, prints their job ids, then waits to be killed.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import IO

from microhive import (
    Chain,
    MicroAgent,
    Namespace,
    Queue,
    QueueBroker,
    chain,
    chord,
    current_job,
    group,
    task,
)

QUEUES = Namespace(
    [
        Queue("crash_add", providing_args=["x", "y", "pause"]),
        Queue("crash_mul", providing_args=["x", "y"]),
        Queue("crash_xsum", providing_args=["numbers"]),
    ],
    kind="queue",
)

_files: dict[str, IO[str]] = {}


def record(what: str) -> None:
    path = os.environ.get("MH_TEST_RECORD")
    if not path:
        return
    file = _files.get(path)
    if file is None:
        file = _files[path] = open(f"{path}.{os.getpid()}", "a", buffering=1)  # noqa: SIM115
    file.write(f"{what} {current_job().id}\n")


class Worker(MicroAgent):
    @task(QUEUES.crash_add, concurrency=8)
    async def add(self, x: int, y: int, pause: float) -> int:
        await asyncio.sleep(pause)
        record("add")
        return x + y

    @task(QUEUES.crash_mul)
    async def mul(self, x: int, y: int) -> int:
        record("mul")
        return x * y

    @task(QUEUES.crash_xsum)
    async def xsum(self, numbers: list[int]) -> int:
        record("xsum")
        return sum(numbers)


def nested_workflow(size: int, pause: float) -> Chain:
    """2, then ``size`` chains that each add ``i`` and double, then the sum of theirs:
    ``nested_result(size)``."""
    add, mul, xsum = QUEUES.crash_add, QUEUES.crash_mul, QUEUES.crash_xsum
    members = group(chain(add.s(y=i, pause=pause), mul.s(y=2)) for i in range(size))
    return chain(add.s(x=1, y=1, pause=pause), members, xsum.s())


def nested_result(size: int) -> int:
    return sum((2 + i) * 2 for i in range(size))


async def submit(url: str, size: int, pause: float) -> None:
    add, mul, xsum = QUEUES.crash_add, QUEUES.crash_mul, QUEUES.crash_xsum
    broker = QueueBroker.from_url(url, queues=QUEUES)
    await broker.connect()
    members = group(add.s(x=i, y=i, pause=pause) for i in range(size))
    together = await broker.submit(chord(members, xsum.s()))
    steps = await broker.submit(chain(add.s(x=4, y=4, pause=pause), mul.s(y=8), mul.s(y=2)))
    nested = await broker.submit(nested_workflow(size, pause))
    print(f"submitted {together.id} {steps.id} {nested.id}", flush=True)
    await asyncio.sleep(3600)  # the test kills this process here


if __name__ == "__main__":
    asyncio.run(submit(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
