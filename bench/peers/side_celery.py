"""Celery's side of a cell (bench/peers/.venv, Celery 5.7, kombu, py-amqp): queues only.

The consumer is ``app.worker_main(["worker", ...])`` with Celery's defaults: the prefork pool
(one child per CPU), prefetch multiplier 4, mingle, gossip and heartbeats on, log level
WARNING; no result backend (``ignore_result=True``). The producer calls ``task.delay(body)``
in a loop (the API is synchronous). The children count in shared memory made before the
pool forks.

- ``default``: early acknowledgement (the message is acked when a worker takes it, before
  the task runs: a crash loses it); on RabbitMQ a durable queue and persistent messages
  (Celery's defaults), no publisher confirms;
- ``closest``: ``task_acks_late=True`` (ack after the task returned); on RabbitMQ also
  ``broker_transport_options={"confirm_publish": True}`` (publisher confirms).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from harness import Cell

COUNT = multiprocessing.Value("q", 0)  # shared with the pool's forked children
LAST = multiprocessing.Value("d", 0.0)


def _app(cell: Cell) -> tuple[Any, Any]:
    from celery import Celery

    url = cell.url
    if cell.engine == "amqp" and url.endswith(":5672/"):
        url += "/"  # kombu's spelling of the vhost "/"
    app = Celery("peers", broker=url)
    app.conf.task_default_queue = f"{cell.token}_work"
    app.conf.task_ignore_result = True
    app.conf.broker_connection_retry_on_startup = True
    if cell.setting == "closest":
        app.conf.task_acks_late = True
        if cell.engine == "amqp":
            app.conf.broker_transport_options = {"confirm_publish": True}

    @app.task(name="peers.handle")
    def handle(body: dict[str, Any]) -> None:
        with COUNT.get_lock():
            COUNT.value += 1
            LAST.value = time.time()

    return app, handle


def consumer_side(cell: Cell) -> None:
    from celery.signals import worker_ready

    app, _ = _app(cell)

    def watch() -> None:
        while COUNT.value < cell.count:
            time.sleep(0.005)
        harness.result(end=LAST.value, count=COUNT.value)
        os._exit(0)  # run.py stops the rest of the process group (the pool's children)

    @worker_ready.connect
    def started(**_: Any) -> None:
        harness.ready()
        threading.Thread(target=watch, daemon=True).start()

    app.worker_main(["worker", "--loglevel=WARNING", "-n", f"{cell.token}@%h"])


def producer_side(cell: Cell) -> None:
    _, handle = _app(cell)
    start = time.time()
    for i in range(cell.count):
        handle.delay(harness.payload(i))
    harness.produced(start)


def main() -> None:
    cell = harness.cell_from_argv()
    (consumer_side if cell.role == "consumer" else producer_side)(cell)


if __name__ == "__main__":
    main()
