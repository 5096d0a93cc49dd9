"""taskiq's side of a cell (bench/peers/.venv; taskiq 0.13, taskiq-redis, -aio-pika, -nats).

The consumer runs ``taskiq.api.run_receiver_task(broker)`` in its process (the documented way
to run a worker from code; defaults: up to 100 tasks at once, ack "when saved", that is after
the task ran, where the broker acks at all); the producer ``await task.kiq(body)`` with 64 in
flight. No result backend. Queues only (taskiq has no pub/sub API for the application).

- redis ``default``: ``ListQueueBroker`` (LPUSH / BRPOP, no ack); ``closest``:
  ``RedisStreamBroker`` (XADD, consumer group, XACK after the task);
- amqp ``default``: ``AioPikaBroker``: durable queue, persistent messages, publisher confirms
  (aio-pika's default channel), prefetch (qos) 10, ack after the task: already the closest;
- nats ``default``: ``NatsBroker``: core NATS with a queue group, not durable at all;
  ``closest``: ``PullBasedJetStreamBroker`` (stream, durable pull consumer, ack after the task).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from harness import Cell


def _broker(cell: Cell) -> Any:
    name = f"{cell.token}_work"
    if cell.engine == "redis":
        from taskiq_redis import ListQueueBroker, RedisStreamBroker

        if cell.setting == "closest":
            return RedisStreamBroker(cell.url, queue_name=name, consumer_group_name="bench")
        return ListQueueBroker(cell.url, queue_name=name)
    if cell.engine == "amqp":
        from taskiq_aio_pika import AioPikaBroker, Exchange, Queue

        return AioPikaBroker(
            cell.url,
            exchange=Exchange(name=f"{name}.x"),
            task_queues=[Queue(name=name)],
            dead_letter_queue=Queue(name=f"{name}.dead"),
        )
    from taskiq_nats import NatsBroker, PullBasedJetStreamBroker

    if cell.setting == "closest":
        return PullBasedJetStreamBroker(
            cell.url, subject=f"{cell.token}.work", stream_name=name, durable="bench"
        )
    return NatsBroker(cell.url, subject=f"{cell.token}.work", queue="bench")


def _task(broker: Any, counter: harness.Counter | None) -> Any:
    @broker.task(task_name="peers.handle")
    async def handle(body: dict[str, Any]) -> None:
        assert counter is not None
        counter.hit()

    return handle


async def consumer_side(cell: Cell) -> None:
    from taskiq.api import run_receiver_task

    broker = _broker(cell)
    counter = harness.Counter(cell.count)
    _task(broker, counter)
    broker.is_worker_process = True
    await broker.startup()
    worker = asyncio.get_running_loop().create_task(run_receiver_task(broker))
    await asyncio.sleep(1)  # the receiver subscribes in that task
    harness.ready()
    assert counter.done is not None
    await counter.done.wait()
    harness.result(end=counter.last, count=counter.count)
    worker.cancel()


async def producer_side(cell: Cell) -> None:
    broker = _broker(cell)
    handle = _task(broker, None)
    await broker.startup()
    start = await harness.lanes(cell.count, lambda i: handle.kiq(harness.payload(i)))
    harness.produced(start)
    await broker.shutdown()


def main() -> None:
    cell = harness.cell_from_argv()
    side = consumer_side if cell.role == "consumer" else producer_side
    asyncio.run(side(cell))


if __name__ == "__main__":
    main()
