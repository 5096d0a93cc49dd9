"""The Celery sample of the seed's lecture (shared/seeds/003), translated line by line.

``python -m examples.tasks.celery_sample`` runs the workers and the caller in this process
on ``memory://``; give a broker URL to use a real engine
(``python -m examples.tasks.celery_sample redis://127.0.0.1:6379/0``; for RabbitMQ add a
result store: ``amqp://guest:guest@127.0.0.1/?results=redis://127.0.0.1:6379/0``). It prints
what the Celery sample prints.
"""

from __future__ import annotations

import asyncio
import sys

from microhive import MicroAgent, Namespace, Queue, QueueBroker, chain, chord, group, task

queues = Namespace(
    [
        Queue("add", providing_args=["x", "y"]),
        Queue("mul", providing_args=["x", "y"]),
        Queue("xsum", providing_args=["l"]),
        Queue("broken_task", providing_args=[]),
        Queue("on_task_error", providing_args=["task_id", "task_name"]),
        Queue("print_task", providing_args=["x"]),
        Queue("on_task_success", providing_args=["task_id", "task_name"]),
    ],
    kind="queue",
)


class Tasks(MicroAgent):
    """The workers: ``microhive run examples.tasks.celery_sample:Tasks --broker URL``."""

    @task(queues.add)
    async def add(self, x: int, y: int) -> int:
        print(f"add({x}, {y})")
        await asyncio.sleep(0.1)
        return x + y

    @task(queues.mul)
    async def mul(self, x: int, y: int) -> int:
        print(f"mul({x}, {y})")
        return x * y

    @task(queues.xsum)
    async def xsum(self, l: list[int]) -> int:  # noqa: E741 - the seed's name
        print(f"xsum({l})")
        return sum(l)

    @task(queues.broken_task)
    async def broken_task(self) -> None:
        raise Exception("failed")

    @task(queues.on_task_error)
    async def on_task_error(self, task_id: str, task_name: str) -> None:
        print(f"ERROR IN TASK {task_id}: {task_name}")

    @task(queues.print_task)
    async def print_task(self, x: str) -> None:
        print(x)

    @task(queues.on_task_success)
    async def on_task_success(self, task_id: object, task_name: str) -> None:
        print(f"TASK SUCCEEDED {task_id}: {task_name}")


async def caller(broker: QueueBroker, worker: Tasks) -> None:
    """The seed's ``send`` script."""
    add, mul, xsum = queues.add, queues.mul, queues.xsum
    result = await broker.add.submit(x=1, y=1)  # add.delay(1, 1)
    print((await result.status()).name)  # PENDING
    print(await result.ready())  # False
    print(await result.result(timeout=3))  # 2
    print((await result.status()).name)  # SUCCEEDED
    print(await result.ready())  # True

    print(await worker.add(x=1, y=1))  # a plain call of the method

    print(await (await broker.submit(group(add.s(x=i, y=i) for i in range(10)))).result())
    print(await (await broker.submit(chain(add.s(x=4, y=4), mul.s(y=8)))).result())
    sums = chord(group(add.s(x=i, y=i) for i in range(10)), xsum.s())
    print(await (await broker.submit(sums)).result())

    failing = await broker.broken_task.submit(
        link_error=queues.on_task_error.s(task_name="broken_task")
    )
    printing = await broker.print_task.submit(
        x="something", link=queues.on_task_success.s(task_name="print_task")
    )
    # wait for the callbacks too, so the program ends after their output
    await broker.job(f"{failing.id}.error0").result(timeout=10)
    await broker.job(f"{printing.id}.link0").result(timeout=10)


async def main(url: str) -> None:
    broker = QueueBroker.from_url(url, queues=queues)
    worker = Tasks(None, broker)
    async with worker:
        await caller(broker, worker)
    await broker.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "memory://"))
