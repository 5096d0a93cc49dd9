"""The task queues and the agent the task contract tests run (the seed's Celery sample)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from microhive import Backoff, MicroAgent, Namespace, Queue, QueueBroker, private_catalog, task
from microhive.agent.specs import ConsumerSpec
from microhive.envelope import Envelope, new_id
from microhive.middleware import Middleware
from microhive.tasks.job import Job
from microhive.tasks.wire import JOB

from .. import engines
from .conftest import Factory, Transport

with private_catalog("task-contract"):
    TASK_QUEUES = Namespace(
        [
            Queue("add", providing_args=["x", "y"]),
            Queue("mul", providing_args=["x", "y"]),
            Queue("xsum", providing_args=["numbers"]),
            Queue("broken", providing_args=[]),
            Queue("flaky", providing_args=["fails"]),
            Queue("slow", providing_args=["steps"]),
            Queue("big", providing_args=["size"]),
            Queue("on_error", providing_args=["job", "task_name"]),
            Queue("record", providing_args=["value"]),
            Queue("loose"),
            Queue("limited", providing_args=["n"]),
        ],
        kind="queue",
    )
q = TASK_QUEUES


class Math(MicroAgent):
    """Every call is counted in ``settings["runs"]`` (a list shared by the test)."""

    def ran(self, name: str, **arguments: Any) -> None:
        self.settings.setdefault("runs", []).append((name, arguments))

    @task(q.add, retries=3, timeout=30)
    async def add(self, x: int, y: int) -> int:
        self.ran("add", x=x, y=y)
        return x + y

    @task(q.mul)
    async def mul(self, x: int, y: int) -> int:
        self.ran("mul", x=x, y=y)
        return x * y

    @task(q.xsum)
    async def xsum(self, numbers: list[int]) -> int:
        self.ran("xsum", numbers=numbers)
        return sum(numbers)

    @task(q.broken)
    async def broken(self) -> None:
        self.ran("broken")
        raise ZeroDivisionError("division by zero")

    # 0.3 s between attempts, not growing: long enough to see RETRYING, short for the suite
    @task(q.flaky, retries=3, backoff=Backoff(initial=0.3, factor=1))
    async def flaky(self, fails: int) -> str:
        self.ran("flaky", fails=fails)
        from microhive import current_job

        if current_job().attempt <= fails:
            raise ConnectionError(f"attempt {current_job().attempt}")
        return f"ok after {current_job().attempt}"

    @task(q.slow, timeout=None)
    async def slow(self, steps: int) -> int:
        from microhive import TaskRevoked, current_job

        job = current_job()
        gate: asyncio.Event = self.settings["gate"]
        try:
            for step in range(steps):
                await job.progress({"done": step})
                await gate.wait()
                gate.clear()
        except TaskRevoked:
            self.ran("slow-revoked")
            raise
        return steps

    @task(q.big, max_result_size=1000)
    async def big(self, size: int) -> Any:
        return object() if size < 0 else "x" * size

    @task(q.on_error)
    async def on_error(self, job: str, task_name: str) -> str:
        self.ran("on_error", job=job, task_name=task_name)
        return f"{task_name} failed as {job}"

    @task(q.record)
    async def record(self, value: Any) -> Any:
        self.ran("record", value=value)
        return value

    @task(q.limited, rate_limit="4/s", concurrency=8)
    async def limited(self, n: int) -> int:
        return n

    @task(q.loose)
    async def loose(self, a: int, b: int = 2) -> int:
        return a + b


@functools.cache
def consuming(queues: frozenset[str]) -> type[Math]:
    """Math with only the tasks of ``queues``: the others are overridden without a
    decorator, which removes a handler (microhive/agent/handlers.py)."""
    tasks = {
        h.spec.queue.name: h.name
        for h in Math.handlers.consumers
        if isinstance(h.spec, ConsumerSpec)
    }
    unknown = queues - tasks.keys()
    if unknown:
        raise ValueError(f"Math has no task for {sorted(unknown)}")
    dropped: dict[str, Any] = {tasks[name]: None for name in tasks.keys() - queues}
    return type(f"Math_{'_'.join(sorted(queues))}", (Math,), dropped)


RESULTS_PREFIX = "microhive-test.results-"


def task_url(transport: Transport, url: str) -> str:
    """The test's URL with a result store: the engine's own, or for AMQP and Kafka Redis
    under a key prefix of the test's own (removed by :func:`forget_results`)."""
    if transport.name in ("amqp", "kafka"):
        engines.require_redis()
        prefix = f"{RESULTS_PREFIX}{new_id()[:10]}:"
        return engines.with_query(url, results=engines.with_query(engines.REDIS_URL, prefix=prefix))
    return url


async def forget_results(url: str) -> None:
    """Delete the Redis result keys :func:`task_url` chose for AMQP and Kafka."""
    results = dict(parse_qsl(urlsplit(url).query)).get("results")
    if results:
        await engines.delete_prefix(results, dict(parse_qsl(urlsplit(results).query))["prefix"])


class TaskFactory(Factory):
    """Brokers that know the task queues; the runs of every Math agent in one list."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.runs: list[tuple[str, dict[str, Any]]] = []

    async def broker(self, queues: Any = TASK_QUEUES, **options: Any) -> QueueBroker:
        return await super().broker(queues, **options)

    async def math(self, *queues: str, **settings: Any) -> Math:
        """A Math agent consuming only ``queues`` (all of Math's when none are named): on
        Kafka each queue consumed costs two consumer-group joins of a second each."""
        kind = consuming(frozenset(queues)) if queues else Math
        agent = kind(
            None, await self.broker(), settings={"runs": self.runs, **settings}, name="Math"
        )
        self.opened.append(_Stopper(agent))
        await agent.start()
        return agent

    def count(self, name: str) -> int:
        return sum(1 for ran, _ in self.runs if ran == name)


class _Stopper:
    def __init__(self, agent: MicroAgent) -> None:
        self.agent = agent

    async def close(self) -> None:
        await self.agent.stop(grace_period=1)


async def results(*jobs: Job[Any], timeout: float = 10) -> list[Any]:
    return [await job.result(timeout=timeout) for job in jobs]


class Sent(Middleware):
    """Every task message a broker sends: what a redelivery would bring again."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    def publishing(self, envelope: Envelope, destination: str) -> None:
        if JOB in envelope.headers:
            self.messages.append(envelope)
