"""Plain-function tasks, no agent class: run in-process by tests/tasks/test_plain.py and as
a real worker by ``microhive run tests.tasks.plain_tasks`` (tests/tasks/test_plain_processes.py).

A sync task that spins until the worker abandons it (its timeout) prints ``abandoned <job>``
and sets :data:`ABANDONED`, so the tests see the thread end; :data:`GATE` holds ``hold``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from microhive import Namespace, Queue, current_job, task

QUEUES = Namespace(
    [
        Queue("plain_add", providing_args=["x", "y"]),
        Queue("plain_mul", providing_args=["x", "y"]),
        Queue("plain_xsum", providing_args=["numbers"]),
        Queue("plain_where", providing_args=[]),
        Queue("plain_flaky", providing_args=["fails"]),
        Queue("plain_broken", providing_args=[]),
        Queue("plain_spin", providing_args=[]),
        Queue("plain_until_revoked", providing_args=["steps"]),
        Queue("plain_hold", providing_args=[]),
    ],
    kind="queue",
)

ABANDONED: list[str] = []
GATE = threading.Event()


@task(QUEUES.plain_add)
async def add(x: int, y: int) -> int:
    await asyncio.sleep(0)
    return x + y


@task(QUEUES.plain_mul)
def mul(x: int, y: int) -> int:
    return x * y


@task(QUEUES.plain_xsum)
def xsum(numbers: list[int]) -> int:
    return sum(numbers)


@task(QUEUES.plain_where)
def where() -> dict[str, Any]:
    """Where a sync task runs: its thread, and the job it sees."""
    job = current_job()
    return {"thread": threading.current_thread().name, "job": job.id, "queue": job.queue}


@task(QUEUES.plain_flaky, retries=2, backoff=0.05)
def flaky(fails: int) -> int:
    """Fails its first ``fails`` attempts; returns the attempt that succeeded."""
    attempt = current_job().attempt
    if attempt <= fails:
        raise ValueError(f"attempt {attempt} fails")
    return attempt


@task(QUEUES.plain_broken)
async def broken() -> None:
    raise RuntimeError("broken on purpose")


@task(QUEUES.plain_spin, timeout=0.3)
def spin() -> None:
    """Never returns by itself: a thread cannot be killed, so it looks whether the worker
    abandoned it (after its timeout) and stops then."""
    job = current_job()
    try:
        while True:
            time.sleep(0.01)
            job.check_revoked_sync()
    except asyncio.CancelledError:
        ABANDONED.append(job.id)
        print(f"abandoned {job.id}", flush=True)
        raise


@task(QUEUES.plain_until_revoked, timeout=None)
def until_revoked(steps: int) -> None:
    """Reports ``steps`` progress values, then waits for a revoke (TaskRevoked ends it)."""
    job = current_job()
    for step in range(steps):
        job.progress_sync(step)
    while True:
        time.sleep(0.01)
        job.check_revoked_sync()


@task(QUEUES.plain_hold, timeout=None)
def hold() -> str:
    """Blocks its thread until :data:`GATE` is set (in-process tests only). On the event
    loop's thread (as it must never run) ``check_revoked_sync`` fails it at once."""
    while not GATE.wait(0.01):
        current_job().check_revoked_sync()
    return "released"
