"""The task API around the core: JSON catalogs, typed signatures, agents submitting, the
in-process test helpers."""

from __future__ import annotations

from typing import Any

import pytest

from microhive import (
    CatalogError,
    ConfigurationError,
    MicroAgent,
    Namespace,
    PayloadError,
    Queue,
    QueueBroker,
    TaskFailed,
    chain,
    parse_catalog,
    private_catalog,
    signature,
    task,
)
from microhive.testing import run_agents

with private_catalog("task-api"):
    CATALOG = parse_catalog(
        {
            "version": 1,
            "queues": [
                {"name": "api_add", "providing_args": ["x", "y"]},
                {"name": "api_double", "providing_args": ["n"]},
                {"name": "api_pipeline", "providing_args": ["n"]},
            ],
        }
    )
    queues = CATALOG.queues


class Calc(MicroAgent):
    @task(queues.api_add)
    async def add(self, x: int, y: int) -> int:
        return x + y

    @task(queues.api_double)
    async def double(self, n: int) -> int:
        return n * 2

    @task(queues.api_pipeline)
    async def pipeline(self, n: int) -> Any:
        """A task that submits a workflow of its own and hands back its job id."""
        job = await self.broker.submit(chain(queues.api_add.s(x=n, y=n), queues.api_double.s()))
        return job.id


async def test_a_bare_broker_checks_arguments_declared_in_a_json_catalog() -> None:
    broker = QueueBroker.from_url("memory://api-bare", queues=queues)
    with pytest.raises(PayloadError, match=r"missing \['y'\]"):
        await broker.api_add.submit(x=1)
    with pytest.raises(PayloadError, match=r"undeclared \['q'\]"):
        await broker.api_add.submit(x=1, y=2, q=3)
    await broker.close()


def test_catalog_task_arguments_are_checked() -> None:
    with private_catalog(), pytest.raises(CatalogError, match="'at' is reserved"):
        parse_catalog({"version": 1, "queues": [{"name": "x", "providing_args": ["at"]}]})
    with private_catalog(), pytest.raises(CatalogError, match="list of names"):
        parse_catalog({"version": 1, "queues": [{"name": "x", "providing_args": "a"}]})


async def test_the_test_hive_runs_tasks_in_process() -> None:
    async with run_agents(Calc, catalog=CATALOG) as hive:
        assert await hive.run_task(queues.api_add.s(x=1, y=2)) == 3
        job_id = await hive.run_task(queues.api_pipeline.s(n=5))
        assert await hive.job(job_id).result(timeout=5) == 20
        with pytest.raises(TaskFailed, match="TypeError"):
            await hive.run_task(queues.api_double.s(n=None))


async def test_a_typed_signature_from_the_method() -> None:
    made = signature(Calc.add, x=1, y=2)
    assert made.queue is queues.api_add and made.arguments == {"x": 1, "y": 2}
    async with run_agents(Calc, catalog=CATALOG) as hive:
        job = await hive.broker.submit(made)
        value: int = await job.result(timeout=5)
        assert value == 3
    with pytest.raises(ConfigurationError, match="not a @task"):
        signature(Calc.__init__)  # type: ignore[arg-type]
    with pytest.raises(PayloadError, match="keywords"):
        signature(Calc.add, 1, 2)  # type: ignore[call-arg]


def test_a_task_takes_keywords_only() -> None:
    with private_catalog():
        queue = Namespace([Queue("kw")], kind="queue").kw

    with pytest.raises(ConfigurationError, match="keywords"):

        class Positional(MicroAgent):
            @task(queue)
            async def run(self, x: int, /) -> int:
                return x
