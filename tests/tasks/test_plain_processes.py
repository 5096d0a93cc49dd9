"""Plain-function tasks on Redis, run by a real ``microhive run tests.tasks.plain_tasks``
process: the module's functions become one worker, no agent class written."""

from __future__ import annotations

import pytest

from microhive import JobState, PayloadError, QueueBroker, TaskFailed, TaskRevoked, chord, group
from microhive.tasks.wire import JOB

from ..cli.helpers import Process
from ..processes import ready, stop, until
from .plain_tasks import QUEUES, add, flaky, mul, xsum


def worker(url: str, *options: str) -> Process:
    return Process(
        "-m", "microhive", "run", "tests.tasks.plain_tasks", "--transport", url,
        "--grace-period", "1", *options,
    )  # fmt: skip


async def test_a_worker_process_runs_plain_tasks(url: str) -> None:
    work = worker(url)
    try:
        await ready(work)
        async with QueueBroker.from_url(url, queues=QUEUES) as broker:
            assert await (await broker.plain_add.submit(x=1, y=2)).result(timeout=20) == 3
            assert await (await broker.plain_mul.submit(x=6, y=7)).result(timeout=20) == 42
            seen = await (await broker.plain_where.submit()).result(timeout=20)
            assert seen["thread"].startswith("microhive-task-where")
            steps = await broker.submit(add.s(x=4, y=4) | mul.s(y=8))
            assert await steps.result(timeout=20) == 64
            summed = await broker.submit(chord(group(mul.s(x=i, y=i) for i in range(4)), xsum.s()))
            assert await summed.result(timeout=20) == 14
            assert await (await broker.submit(flaky.s(fails=2))).result(timeout=20) == 3
            failing = await broker.plain_flaky.submit(fails=5)
            with pytest.raises(TaskFailed, match="attempt 3 fails") as caught:
                await failing.result(timeout=20)
            assert caught.value.remote_type == "ValueError"
            with pytest.raises(TaskFailed, match="broken on purpose"):
                await (await broker.plain_broken.submit()).result(timeout=20)
        assert stop(work) == 0, work.output
    finally:
        work.kill()
    assert "running 1 agent" in work.output


async def test_wrong_arguments_and_a_sync_timeout_in_a_worker_process(url: str) -> None:
    work = worker(url)
    try:
        await ready(work)
        async with QueueBroker.from_url(url, queues=QUEUES) as broker:
            with pytest.raises(PayloadError):
                await broker.plain_add.submit(x=1)
            await broker.send("plain_mul", {"x": 1, "z": 2}, headers={JOB: "unchecked-1"})
            with pytest.raises(TaskFailed, match=r"invalid payload.*missing \['y'\]"):
                await broker.job("unchecked-1").result(timeout=20)
            spinning = await broker.plain_spin.submit()
            with pytest.raises(TaskFailed, match=r"exceeded its timeout of 0\.3 s") as caught:
                await spinning.result(timeout=20)
            assert caught.value.remote_type == "HandlerTimeout"
            await until(lambda: f"abandoned {spinning.id}" in work.output, 20, "the thread")
            waiting = await broker.plain_until_revoked.submit(steps=2)

            async def reported() -> bool:
                return await waiting.progress() == 1

            await until(reported, 20, "the progress of a sync task")
            await waiting.revoke("enough")
            with pytest.raises(TaskRevoked):
                await waiting.result(timeout=20)
            assert await waiting.status() is JobState.REVOKED
            assert await (await broker.plain_add.submit(x=1, y=1)).result(timeout=20) == 2
        assert stop(work) == 0, work.output
    finally:
        work.kill()


async def test_processes_mode_runs_the_module_tasks_in_a_child(url: str) -> None:
    work = worker(url, "--processes")
    try:
        await ready(work)
        async with QueueBroker.from_url(url, queues=QUEUES) as broker:
            assert await (await broker.plain_mul.submit(x=3, y=3)).result(timeout=20) == 9
        assert stop(work) == 0, work.output
    finally:
        work.kill()
    assert "tests.tasks.plain_tasks:add,mul" in work.output
