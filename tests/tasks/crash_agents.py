"""The task workers and the caller that the crash tests run as real processes.

``microhive run tests.tasks.crash_agents:Worker --transport URL`` runs the tasks (``Members``
and ``Callbacks`` split them between processes); each run
appends ``<task> <job id>`` to ``$MH_TEST_RECORD.<pid>`` before it returns (so a SIGKILL
never hides a run), and ``add`` also ``took add <job id>`` when it starts (so a test sees
which members a SIGKILL interrupted). With ``MH_TEST_DIE_AT`` set, the first worker to reach
that point of enqueueing a chord's callback SIGKILLs itself (:func:`die_at`).
``python -m tests.tasks.crash_agents URL SIZE PAUSE [nested]`` submits a chord and a chain
(and a nested workflow), prints their job ids, then waits to be killed.
"""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import sys
from typing import IO, Any

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
from microhive.tasks.continuation import Continuer
from microhive.tasks.store import ResultStore
from microhive.tasks.wire import Step

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


class Members(MicroAgent):
    """The group's members and the chain's steps."""

    @task(QUEUES.crash_add, concurrency=8)
    async def add(self, x: int, y: int, pause: float) -> int:
        record("took add")
        await asyncio.sleep(pause)
        record("add")
        return x + y

    @task(QUEUES.crash_mul)
    async def mul(self, x: int, y: int) -> int:
        record("mul")
        return x * y


class Callbacks(MicroAgent):
    """The chord's callback."""

    @task(QUEUES.crash_xsum)
    async def xsum(self, numbers: list[int]) -> int:
        record("xsum")
        return sum(numbers)


class Worker(Members, Callbacks):
    """Every task of the tests in one agent."""


# -- dying at a chosen point -------------------------------------------------------------

CALLBACK_DUE = "callback-due"
"""The group's join said it is complete; the chord's callback is not sent yet."""
CALLBACK_SENT = "callback-sent"
"""The callback's message is sent; its record is not marked enqueued yet (docs/tasks.md,
Guarantees: the one window where it is sent twice)."""


def die_once(marker: str) -> None:
    """SIGKILL this process unless some worker already died here (``marker`` exists)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


class _DyingStore:
    """The worker's store, but the first ``transition`` (marking the step enqueued) is a
    SIGKILL instead."""

    def __init__(self, store: ResultStore, marker: str) -> None:
        self._store = store
        self._marker = marker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def transition(self, *args: Any, **kwargs: Any) -> Any:
        die_once(self._marker)
        return await self._store.transition(*args, **kwargs)


def die_at(point: str, marker: str) -> None:
    """Make the first worker (of all that share ``marker``) that enqueues a chord's
    callback SIGKILL itself at ``point``: the others carry the workflow on."""
    enqueue = Continuer.enqueue

    async def dying(self: Continuer, step: Step, value: Any, *rest: Any, **more: Any) -> None:
        target = self
        if step.queue == QUEUES.crash_xsum.name:
            if point == CALLBACK_DUE:
                die_once(marker)
            elif point == CALLBACK_SENT:
                target = copy.copy(self)
                target.store = _DyingStore(self.store, marker)  # type: ignore[assignment]
        await enqueue(target, step, value, *rest, **more)

    Continuer.enqueue = dying  # type: ignore[method-assign]


if os.environ.get("MH_TEST_DIE_AT"):
    die_at(os.environ["MH_TEST_DIE_AT"], os.environ["MH_TEST_DIE_MARKER"])


# -- the caller ------------------------------------------------------------------------------


def nested_workflow(size: int, pause: float) -> Chain:
    """2, then ``size`` chains that each add ``i`` and double, then the sum of theirs:
    ``nested_result(size)``."""
    add, mul, xsum = QUEUES.crash_add, QUEUES.crash_mul, QUEUES.crash_xsum
    members = group(chain(add.s(y=i, pause=pause), mul.s(y=2)) for i in range(size))
    return chain(add.s(x=1, y=1, pause=pause), members, xsum.s())


def nested_result(size: int) -> int:
    return sum((2 + i) * 2 for i in range(size))


async def submit(url: str, size: int, pause: float, nested: bool) -> None:
    add, mul, xsum = QUEUES.crash_add, QUEUES.crash_mul, QUEUES.crash_xsum
    broker = QueueBroker.from_url(url, queues=QUEUES)
    await broker.connect()
    members = group(add.s(x=i, y=i, pause=pause) for i in range(size))
    together = await broker.submit(chord(members, xsum.s()))
    steps = await broker.submit(chain(add.s(x=4, y=4, pause=pause), mul.s(y=8), mul.s(y=2)))
    ids = [together.id, steps.id]
    if nested:
        ids.append((await broker.submit(nested_workflow(size, pause))).id)
    print("submitted", *ids, flush=True)
    await asyncio.sleep(3600)  # the test kills this process here


if __name__ == "__main__":
    asyncio.run(submit(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), "nested" in sys.argv[4:]))
