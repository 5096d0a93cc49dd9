"""Tasks: queue messages whose result is kept — states, results, errors, revokes, options.

The seed's Celery sample (shared/seeds/003) line by line: ``add.delay(1, 1)`` is
``broker.add.submit(x=1, y=1)``, ``result.get(timeout=3)`` is ``job.result(timeout=3)``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from microhive import (
    ConfigurationError,
    JobState,
    MicroAgent,
    PayloadError,
    Queue,
    ResultTimeout,
    TaskFailed,
    TaskRevoked,
    UnknownNameError,
    chain,
    private_catalog,
    task,
)
from microhive.tasks.store import JobRecord
from microhive.tasks.stores import store_for
from microhive.tasks.wire import JOB

from .helpers import eventually
from .task_agents import TASK_QUEUES, TaskFactory, q, results


async def test_submit_then_result(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    await tasks.math("add")
    job = await broker.add.submit(x=1, y=1)
    assert await job.result(timeout=10) == 2
    assert await job.status() is JobState.SUCCEEDED
    assert await job.ready()
    record = await job.record()
    assert record is not None and record.queue == "add" and record.attempt == 1
    assert await broker.job(job.id).result(timeout=1) == 2  # the same job, by its id


async def test_a_job_waits_queued_until_a_worker_runs_it(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    job = await broker.add.submit(x=2, y=3)
    assert await job.status() is JobState.PENDING
    with pytest.raises(ResultTimeout, match="pending") as caught:
        await job.result(timeout=0.3)
    assert isinstance(caught.value, TimeoutError)
    await tasks.math("add")
    assert await job.result(timeout=10) == 5


async def test_an_unknown_job_is_unknown_not_pending(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    job = broker.job("nobody-submitted-this")
    assert await job.status() is JobState.UNKNOWN
    assert await job.record() is None
    with pytest.raises(ResultTimeout, match="unknown"):
        await job.result(timeout=0.2)
    assert await job.revoke() is False


async def test_a_failure_raises_the_remote_type_and_message(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    await tasks.math("broken")
    job = await broker.broken.submit()
    with pytest.raises(TaskFailed) as caught:
        await job.result(timeout=10)
    assert caught.value.remote_type == "ZeroDivisionError"
    assert caught.value.remote_message == "division by zero"
    assert caught.value.job_id == job.id
    assert await job.status() is JobState.FAILED
    assert tasks.count("broken") == 1  # no retries unless asked


async def test_retries_pass_through_retrying(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    await tasks.math("flaky")
    job = await broker.flaky.submit(fails=2)
    await eventually(lambda: _is(job, JobState.RETRYING), timeout=10)
    record = await job.record()
    assert record is not None and record.error_type == "ConnectionError"
    assert await job.result(timeout=10) == "ok after 3"
    assert tasks.count("flaky") == 3
    failing = await broker.flaky.submit(fails=9)
    with pytest.raises(TaskFailed, match="attempt 4"):
        await failing.result(timeout=10)


async def _is(job: object, state: JobState) -> bool:
    return await job.status() is state  # type: ignore[attr-defined, no-any-return]


async def test_a_caller_given_job_id_deduplicates(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    first = await broker.add.submit(x=1, y=2, job_id="order-42")
    second = await broker.add.submit(x=100, y=200, job_id="order-42")
    assert first.id == second.id == "order-42"
    await tasks.math("add")
    assert await second.result(timeout=10) == 3
    third = await broker.add.submit(x=5, y=5, job_id="order-42")
    assert await third.result(timeout=1) == 3
    await asyncio.sleep(0.2)
    assert tasks.count("add") == 1


async def test_a_resubmit_sends_what_a_submitter_killed_before_sending_left_unsent(
    tasks: TaskFactory,
) -> None:
    """A caller died between writing a job's record and sending its message: submitting the
    same job id again sends it (the record says it never went out), once."""
    broker = await tasks.broker()
    store = store_for(broker)
    await store.create(JobRecord(id="order-7", queue="add", created_at=time.time()))
    await store.create(JobRecord(id="chain-7", queue="mul", created_at=time.time()))
    job = await broker.add.submit(x=3, y=4, job_id="order-7")
    again = await broker.add.submit(x=3, y=4, job_id="order-7")  # sent now: not again
    flow = await broker.submit(chain(q.add.s(x=1, y=1), q.mul.s(y=10)), job_id="chain-7")
    await tasks.math("add", "mul")
    assert await job.result(timeout=10) == await again.result(timeout=10) == 7
    assert await flow.result(timeout=10) == 20
    await asyncio.sleep(0.2)
    assert tasks.count("add") == 2 and tasks.count("mul") == 1


async def test_revoke_a_pending_job(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    job = await broker.add.submit(x=1, y=1)
    assert await job.revoke("not needed") is True
    assert await job.revoke() is False  # final already
    assert await job.status() is JobState.REVOKED
    await tasks.math("add")
    with pytest.raises(TaskRevoked, match="not needed"):
        await job.result(timeout=5)
    await eventually(lambda: _drained(broker, "add"), timeout=10)
    assert tasks.count("add") == 0


async def _drained(broker: object, queue: str) -> bool:
    return await broker.length(queue) == 0  # type: ignore[attr-defined, no-any-return]


async def test_progress_and_a_cooperative_cancel_of_a_running_job(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    gate = asyncio.Event()
    await tasks.math("slow", gate=gate)
    job = await broker.slow.submit(steps=100)
    assert await eventually(lambda: _progress_is(job, {"done": 0}), timeout=10)
    assert await job.status() is JobState.STARTED
    gate.set()
    assert await eventually(lambda: _progress_is(job, {"done": 1}), timeout=10)
    assert await job.revoke("user cancelled") is True
    gate.set()  # the task reports again and learns of the revoke
    await eventually(lambda: tasks.count("slow-revoked") == 1, timeout=10)
    with pytest.raises(TaskRevoked, match="user cancelled"):
        await job.result(timeout=5)
    assert await job.status() is JobState.REVOKED


async def _progress_is(job: object, value: object) -> bool:
    return await job.progress() == value  # type: ignore[attr-defined]


async def test_a_result_too_big_or_not_json_fails_the_job(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    await tasks.math("big")
    assert await (await broker.big.submit(size=10)).result(timeout=10) == "x" * 10
    with pytest.raises(TaskFailed, match=r"result cannot be stored.*limit is 1000"):
        await (await broker.big.submit(size=5000)).result(timeout=10)
    with pytest.raises(TaskFailed, match=r"result cannot be stored.*not JSON"):
        await (await broker.big.submit(size=-1)).result(timeout=10)


async def test_delay_and_at_hold_a_job_back(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    await tasks.math("add")
    submitted = time.time()
    later = await broker.add.submit(x=1, y=1, delay=0.5)
    at = await broker.add.submit(x=2, y=2, at=datetime.now(UTC) + timedelta(seconds=0.5))
    assert await results(later, at) == [2, 4]
    for job in (later, at):
        record = await job.record()
        assert record is not None and record.started_at is not None
        assert record.started_at - submitted >= 0.45
    with pytest.raises(ConfigurationError, match="not both"):
        await broker.add.submit(x=1, y=1, delay=1, at=time.time())
    with pytest.raises(ConfigurationError, match="aware"):
        await broker.add.submit(x=1, y=1, at=datetime.now())


async def test_bad_arguments_are_refused_at_the_sender(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    with pytest.raises(PayloadError, match=r"missing \['y'\]"):
        await broker.add.submit(x=1)
    with pytest.raises(PayloadError, match=r"undeclared \['z'\]"):
        await broker.add.submit(x=1, y=2, z=3)
    with pytest.raises(PayloadError, match=r"undeclared \['z'\]"):
        q.add.s(z=1)
    with pytest.raises(UnknownNameError, match="nope"):
        await broker.nope.submit(x=1)
    with pytest.raises(ConfigurationError, match="job_id"):
        await broker.add.submit(x=1, y=2, job_id="")
    assert await broker.length("add") == 0


def test_reserved_names_are_refused_when_declared() -> None:
    with private_catalog(), pytest.raises(ConfigurationError, match="'delay' is reserved"):
        Queue("later", providing_args=["delay"])
    with pytest.raises(ConfigurationError, match="'link' is reserved"):

        class Linked(MicroAgent):
            @task(q.record)
            async def record(self, value: int, link: str = "") -> int:
                return value

    with pytest.raises(ConfigurationError, match="declares arguments"):

        class Short(MicroAgent):
            @task(q.add)
            async def add(self, x: int) -> int:
                return x


async def test_the_worker_checks_arguments_again(tasks: TaskFactory) -> None:
    """A message from a sender that did not check (a plain client, an undeclared queue)."""
    broker = await tasks.broker()
    await tasks.math("add", "loose")
    await broker.send("add", {"x": 1}, headers={JOB: "plain-1"})
    job = broker.job("plain-1")
    with pytest.raises(TaskFailed, match=r"invalid payload.*missing \['y'\]"):
        await job.result(timeout=10)
    await eventually(lambda: _dead(broker, "add"), timeout=10)
    loose = await broker.loose.submit(a=1, c=3)  # the queue declares no arguments
    with pytest.raises(TaskFailed, match=r"unexpected \['c'\]"):
        await loose.result(timeout=10)
    assert await (await broker.loose.submit(a=1)).result(timeout=10) == 3


async def _dead(broker: object, queue: str) -> bool:
    return len(await broker.dead_letters(queue)) == 1  # type: ignore[attr-defined]


async def test_a_message_without_a_job_id_is_a_job_named_by_its_message(
    tasks: TaskFactory,
) -> None:
    broker = await tasks.broker()
    await tasks.math("add")
    message_id = await broker.send("add", {"x": 20, "y": 22})
    assert await broker.job(message_id).result(timeout=10) == 42


async def test_jobs_are_listed_by_queue_and_state(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    await tasks.math("add", "broken")
    done = await broker.add.submit(x=1, y=1)
    failed = await broker.broken.submit()
    await done.result(timeout=10)
    with pytest.raises(TaskFailed):
        await failed.result(timeout=10)
    store = broker.job(done.id).store
    assert done.id in [r.id for r in await store.jobs(queue="add")]
    assert [r.id for r in await store.jobs(queue="broken", state=JobState.FAILED)] == [failed.id]
    assert await store.jobs(queue="broken", state=JobState.SUCCEEDED) == []


def test_queue_declarations_carry_task_arguments() -> None:
    assert TASK_QUEUES.add.arguments == ("x", "y")
    assert TASK_QUEUES.loose.arguments is None
    assert q.add.s(x=1).arguments == {"x": 1}


async def test_a_rate_limit_holds_across_workers(tasks: TaskFactory) -> None:
    broker = await tasks.broker()
    if not broker.capabilities.delayed_delivery:
        pytest.skip("no delayed delivery: a rate limit cannot hold jobs back")
    await asyncio.gather(tasks.math("limited"), tasks.math("limited"))  # one Kafka rebalance
    jobs = [await broker.limited.submit(n=n) for n in range(10)]
    assert await results(*jobs, timeout=30) == list(range(10))
    windows: dict[int, int] = {}
    for job in jobs:
        record = await job.record()
        assert record is not None and record.started_at is not None
        windows[int(record.started_at)] = windows.get(int(record.started_at), 0) + 1
    assert max(windows.values()) <= 4, windows
    assert len(windows) >= 3
