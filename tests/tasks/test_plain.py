"""Plain-function tasks on the in-process transport: the same ``@task`` on a function with
no agent class, async or sync (a sync one in a thread), run by ``tasks_agent`` or found by
``microhive run module`` (docs/tasks.md, Tasks without a class)."""

from __future__ import annotations

import datetime
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from microhive import (
    ConfigurationError,
    JobState,
    MicroAgent,
    Namespace,
    PayloadError,
    Queue,
    QueueBroker,
    TaskFailed,
    TaskFunction,
    TaskRevoked,
    chain,
    chord,
    current_job,
    group,
    private_catalog,
    signature,
    task,
    tasks_agent,
)
from microhive.agent.inventory import describe
from microhive.agent.plain import target_of, tasks_of
from microhive.envelope import new_id
from microhive.runner import load_target
from microhive.tasks.wire import JOB
from microhive.testing import eventually

from . import plain_tasks, plain_worker
from .plain_tasks import QUEUES, add, flaky, mul, xsum

Plain = tasks_agent(
    "Plain",
    *(value for value in vars(plain_tasks).values() if isinstance(value, TaskFunction)),
)

with private_catalog("plain-rules"):
    RULES = Namespace(
        [Queue("rule_xy", providing_args=["x", "y"]), Queue("rule_any")], kind="queue"
    )


@pytest.fixture
async def broker() -> AsyncIterator[QueueBroker]:
    made = QueueBroker.from_url(f"memory://plain-{new_id()[:8]}", queues=QUEUES)
    async with made, Plain(None, made):
        yield made


# -- what the decorator makes ---------------------------------------------------------------


async def test_a_plain_task_is_still_the_function() -> None:
    assert isinstance(add, TaskFunction) and isinstance(mul, TaskFunction)
    assert await add(x=1, y=2) == 3
    assert await add(1, 2) == 3  # a local call, as Celery's add(1, 2): positional is fine
    assert mul(2, 3) == 6
    assert add.__name__ == "add" and add.__module__ == plain_tasks.__name__
    assert add.queue is QUEUES.plain_add and not mul.is_async
    partial = add.s(x=1)
    assert partial.queue is QUEUES.plain_add and partial.arguments == {"x": 1}


def test_methods_and_plain_functions_are_told_apart_by_where_they_are_defined() -> None:
    class Agent(MicroAgent):
        @task(RULES.rule_xy)
        async def add(self, x: int, y: int) -> int:
            return x + y

    @task(RULES.rule_xy)
    async def local(x: int, y: int) -> int:  # qualname "...<locals>.local": plain
        return x + y

    def factory() -> type[MicroAgent]:
        class Inner(MicroAgent):  # qualname "...<locals>.Inner.add": a method
            @task(RULES.rule_xy)
            async def add(self, x: int, y: int) -> int:
                return x + y

        return Inner

    def built() -> type[MicroAgent]:
        @task(RULES.rule_xy)
        async def add(self: MicroAgent, x: int, y: int) -> int:  # "...<locals>.add", self
            return x + y

        return type("Built", (MicroAgent,), {"add": add})

    assert not isinstance(Agent.add, TaskFunction)
    assert [h.name for h in built().handlers.consumers] == ["add"]
    assert [h.name for h in Agent.handlers.consumers] == ["add"]
    assert isinstance(local, TaskFunction)
    assert not isinstance(factory().add, TaskFunction)  # type: ignore[attr-defined]


def test_a_sync_method_is_refused_a_sync_function_is_not() -> None:
    with pytest.raises(ConfigurationError, match=r"must be 'async def'.*plain function"):

        class Agent(MicroAgent):
            @task(RULES.rule_xy)
            def add(self, x: int, y: int) -> int:
                return x + y

    @task(RULES.rule_xy)
    def plain(x: int, y: int) -> int:
        return x + y

    assert isinstance(plain, TaskFunction) and not plain.is_async


def test_a_plain_task_is_checked_as_a_method_is_without_a_self() -> None:
    with pytest.raises(ConfigurationError, match=r"declares arguments \['y'\] it does not take"):

        @task(RULES.rule_xy)
        def only_x(x: int) -> int:
            return x

    with pytest.raises(ConfigurationError, match="keywords"):

        @task(RULES.rule_any)
        def positional(x: int, /) -> int:
            return x

    with pytest.raises(ConfigurationError, match="'delay' is reserved"):

        @task(RULES.rule_any)
        def reserved(delay: int) -> int:
            return delay

    with pytest.raises(ConfigurationError, match="generator"):

        @task(RULES.rule_any)
        def generator() -> Any:
            yield 1

    with pytest.raises(ConfigurationError, match="a task already"):
        task(RULES.rule_any)(add)


def test_tasks_agent_refuses_what_it_cannot_run() -> None:
    async def undecorated(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match="not a plain function decorated with @task"):
        tasks_agent("Bad", undecorated)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="one or more"):
        tasks_agent("Empty")
    with pytest.raises(ConfigurationError, match="identifier"):
        tasks_agent("not a name", add)
    with pytest.raises(ConfigurationError, match="two tasks named 'add'"):
        tasks_agent("Twice", add, add)

    @task(RULES.rule_any)
    async def stop() -> None:
        return None

    with pytest.raises(ConfigurationError, match="cannot be named 'stop'"):
        tasks_agent("Clash", stop)


def test_tasks_agent_is_an_agent_class_with_one_handler_per_function() -> None:
    assert issubclass(Plain, MicroAgent) and Plain.__name__ == "Plain"
    assert Plain.__module__ == __name__
    handlers = {h.name: h for h in Plain.handlers.consumers}
    assert handlers["add"].spec.queue is QUEUES.plain_add  # type: ignore[attr-defined]
    assert handlers["flaky"].spec.retries == 2  # type: ignore[attr-defined]
    assert handlers["mul"].parameters.names == {"x", "y"}


async def test_a_plain_task_in_a_class_body_runs_beside_methods() -> None:
    class Mixed(MicroAgent):
        add = add  # a plain task taken in as it is: still callable without a self
        triple = plain_worker.triple

        @task(QUEUES.plain_xsum)
        async def xsum(self, numbers: list[int]) -> int:
            return sum(numbers) + await self.add(x=0, y=0)

    assert [h.name for h in Mixed.handlers.consumers] == ["add", "triple", "xsum"]
    broker = QueueBroker.from_url(f"memory://mixed-{new_id()[:8]}", queues=QUEUES)
    async with broker, Mixed(None, broker):
        assert await (await broker.submit(add.s(x=1, y=1) | add.s(y=1))).result(timeout=10) == 3
        assert await (await broker.plain_xsum.submit(numbers=[1, 2])).result(timeout=10) == 3
        tripled = await broker.submit(signature(plain_worker.triple, x=2))
        assert await tripled.result(timeout=10) == 6
    (cls,) = [c for c in load_target("tests.tasks.plain_worker") if c.__name__ == "plain_worker"]
    assert tasks_of(cls) == [plain_worker.triple]


# -- run by a worker --------------------------------------------------------------------------


async def test_async_and_sync_plain_tasks_run_and_keep_their_results(
    broker: QueueBroker,
) -> None:
    assert await (await broker.plain_add.submit(x=1, y=2)).result(timeout=10) == 3
    assert await (await broker.plain_mul.submit(x=6, y=7)).result(timeout=10) == 42
    job = await broker.submit(signature(mul, x=2, y=5))
    assert await job.result(timeout=10) == 10
    where = await broker.plain_where.submit()
    seen = await where.result(timeout=10)
    assert seen["thread"].startswith("microhive-task-where")
    assert seen["thread"] != threading.current_thread().name
    assert seen == {"thread": seen["thread"], "job": where.id, "queue": "plain_where"}


async def test_a_sync_task_never_blocks_the_event_loop(broker: QueueBroker) -> None:
    plain_tasks.GATE.clear()
    held = await broker.plain_hold.submit()
    await eventually(lambda: _state_is(held.id, broker, JobState.STARTED), timeout=10)
    # the held thread blocks; the loop still runs other jobs, sync ones too
    assert await (await broker.plain_add.submit(x=2, y=2)).result(timeout=10) == 4
    assert await (await broker.plain_mul.submit(x=2, y=3)).result(timeout=10) == 6
    assert await held.status() is JobState.STARTED
    plain_tasks.GATE.set()
    assert await held.result(timeout=10) == "released"


async def test_failures_are_retried_then_fail_the_job(broker: QueueBroker) -> None:
    assert await (await broker.plain_flaky.submit(fails=2)).result(timeout=10) == 3
    failing = await broker.plain_flaky.submit(fails=5)
    with pytest.raises(TaskFailed, match="attempt 3 fails") as caught:
        await failing.result(timeout=10)
    assert caught.value.remote_type == "ValueError"
    record = await broker.job(failing.id).record()
    assert record is not None and record.attempt == 3
    broken = await broker.plain_broken.submit()
    with pytest.raises(TaskFailed, match="broken on purpose"):
        await broken.result(timeout=10)


async def test_a_chain_a_group_and_a_chord_of_plain_tasks(broker: QueueBroker) -> None:
    steps = await broker.submit(add.s(x=4, y=4) | mul.s(y=8) | add.s(y=1))
    assert await steps.result(timeout=10) == 65
    both = await broker.submit(group(add.s(x=i, y=i) for i in range(5)))
    assert await both.result(timeout=10) == [0, 2, 4, 6, 8]
    summed = await broker.submit(chord(group(mul.s(x=i, y=i) for i in range(4)), xsum.s()))
    assert await summed.result(timeout=10) == 14
    failing = await broker.submit(chain(flaky.s(fails=9), add.s(y=1)))
    with pytest.raises(TaskFailed, match="fails"):
        await failing.result(timeout=10)


async def test_wrong_arguments_are_refused(broker: QueueBroker) -> None:
    with pytest.raises(PayloadError, match="y"):
        await broker.plain_add.submit(x=1)
    with pytest.raises(PayloadError, match="z"):
        await broker.submit(mul.s(x=1, y=2, z=3))
    await broker.send("plain_mul", {"x": 1}, headers={JOB: "unchecked-1"})
    with pytest.raises(TaskFailed, match=r"invalid payload.*missing \['y'\]"):
        await broker.job("unchecked-1").result(timeout=10)


async def test_a_sync_task_past_its_timeout_fails_and_its_thread_is_abandoned(
    broker: QueueBroker,
) -> None:
    job = await broker.plain_spin.submit()
    with pytest.raises(TaskFailed, match=r"exceeded its timeout of 0\.3 s") as caught:
        await job.result(timeout=10)
    assert caught.value.remote_type == "HandlerTimeout"
    # the thread saw it was abandoned at its next check, and stopped
    await eventually(lambda: job.id in plain_tasks.ABANDONED, timeout=10)
    assert await (await broker.plain_add.submit(x=1, y=1)).result(timeout=10) == 2


async def test_a_sync_task_reports_progress_and_stops_at_a_revoke(broker: QueueBroker) -> None:
    job = await broker.plain_until_revoked.submit(steps=3)
    await eventually(lambda: _progress_is(job.id, broker, 2), timeout=10)
    await job.revoke("enough")
    with pytest.raises(TaskRevoked):
        await job.result(timeout=10)
    assert await job.status() is JobState.REVOKED


async def test_the_sync_helpers_refuse_the_event_loop(broker: QueueBroker) -> None:
    @task(RULES.rule_any)
    async def misuse() -> str:
        try:
            current_job().check_revoked_sync()
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    local = QueueBroker.from_url(f"memory://misuse-{new_id()[:8]}", queues=RULES)
    async with local, tasks_agent("Misuse", misuse)(None, local):
        job = await local.rule_any.submit()
        assert "await the others" in await job.result(timeout=10)


# -- found by `microhive run` -------------------------------------------------------------------


def test_run_module_makes_one_agent_of_its_plain_tasks() -> None:
    (cls,) = load_target("tests.tasks.plain_tasks")
    assert cls.__name__ == "plain_tasks"
    names = {h.name for h in cls.handlers.consumers}
    assert {"add", "mul", "xsum", "flaky", "spin"} <= names
    assert target_of(cls) == f"tests.tasks.plain_tasks:{','.join(names_in_order(cls))}"
    (again,) = load_target(target_of(cls))  # what a --processes child loads
    assert [h.name for h in again.handlers.consumers] == names_in_order(cls)
    (two,) = load_target("tests.tasks.plain_tasks:add,mul")
    assert [h.name for h in two.handlers.consumers] == ["add", "mul"]


def test_run_module_skips_plain_tasks_a_class_runs_already() -> None:
    worker, rest = load_target("tests.tasks.plain_worker")
    assert worker.__name__ == "Arithmetic"
    assert target_of(worker) == "tests.tasks.plain_worker:Worker"
    now = datetime.datetime.now(datetime.UTC)
    assert describe(worker, now)["agent"] == "tests.tasks.plain_worker:Worker"  # agents, console
    assert [h.name for h in worker.handlers.consumers] == ["add", "double"]
    assert [h.name for h in rest.handlers.consumers] == ["triple"]
    assert load_target("tests.tasks.plain_worker:Worker") == [worker]
    with pytest.raises(
        ConfigurationError, match=r"no MicroAgent subclass 'nothing'.*nor a @task function"
    ):
        load_target("tests.tasks.plain_worker:nothing")


def names_in_order(cls: type[MicroAgent]) -> list[str]:
    return [h.name for h in cls.handlers.consumers]


async def _state_is(job_id: str, broker: QueueBroker, state: JobState) -> bool:
    return await broker.job(job_id).status() is state


async def _progress_is(job_id: str, broker: QueueBroker, value: Any) -> bool:
    return await broker.job(job_id).progress() == value
