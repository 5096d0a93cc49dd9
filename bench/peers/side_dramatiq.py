"""Dramatiq's side of a cell (bench/peers/.venv, Dramatiq 2.2): durable queues only.

The consumer is one process running ``dramatiq.Worker(broker)`` with its defaults (8 worker
threads, Dramatiq's default middleware: age limit, time limit, retries, ...; the ``dramatiq``
command would start one such process per CPU). Dramatiq always acks after the actor returned.
The producer calls ``actor.send(body)`` in a loop (Dramatiq's API is synchronous).

- redis ``default``: ``RedisBroker(url=..., namespace=<token>)`` (its only guarantee);
- amqp ``default``: ``RabbitmqBroker(url=...)``: durable queue, persistent messages,
  ``confirm_delivery=False``; ``closest``: ``RabbitmqBroker(url=..., confirm_delivery=True)``.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from harness import Cell


def _actor(cell: Cell, counter: harness.Counter | None) -> Any:
    import dramatiq

    if cell.engine == "redis":
        from dramatiq.brokers.redis import RedisBroker

        broker: Any = RedisBroker(url=cell.url, namespace=cell.token)
    else:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=cell.url, confirm_delivery=cell.setting == "closest")
    dramatiq.set_broker(broker)
    lock = threading.Lock()

    @dramatiq.actor(queue_name=f"{cell.token}_work")
    def handle(body: dict[str, Any]) -> None:
        assert counter is not None
        with lock:
            counter.hit()

    return handle


def consumer_side(cell: Cell) -> None:
    from dramatiq import Worker

    counter = harness.Counter(cell.count)
    actor = _actor(cell, counter)
    worker = Worker(actor.broker)
    worker.start()
    harness.ready()
    while counter.count < cell.count:
        time.sleep(0.005)
    harness.result(end=counter.last, count=counter.count)
    worker.stop(timeout=5000)


def producer_side(cell: Cell) -> None:
    actor = _actor(cell, None)
    start = time.time()
    for i in range(cell.count):
        actor.send(harness.payload(i))
    harness.produced(start)
    actor.broker.close()


def main() -> None:
    cell = harness.cell_from_argv()
    (consumer_side if cell.role == "consumer" else producer_side)(cell)


if __name__ == "__main__":
    main()
