"""Celery and Dramatiq doing what bench/bench_tasks.py has microhive do: tasks with results.

Run with the peers' venv (bench/peers/setup.sh), one peer and engine per call; prints one
JSON line with the same fields as bench_tasks.py:

    bench/peers/.venv/bin/python bench/peers/tasks_peers.py celery redis --n 3000

- **celery**: ``task_acks_late=True`` (ack after the task, as microhive), prefork pool with
  2 children in a process of its own; results in Redis on both engines (as microhive's
  ``results=redis://`` on RabbitMQ; Celery's ``rpc://`` backend timed out here when results
  were fetched from several threads); ``add.delay(x, y).get(timeout=...)``.
- **dramatiq**: a ``Worker`` (8 threads) in this process, or with ``--workers N`` in N
  processes of their own, the ``Results`` middleware with a
  Redis backend on both engines (Dramatiq has none on RabbitMQ);
  ``add.send(x, y).get_result(block=True)``; RabbitMQ with publisher confirms.

Round trip: one task at a time, p50 / p99 of ``--calls`` after 50 untimed. Throughput:
``--n`` tasks sent from 16 threads (both APIs are synchronous), then every result fetched.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cputime  # beside this file

REDIS = "redis://127.0.0.1:6379/0"
AMQP = "amqp://guest:guest@127.0.0.1:5672//"


def celery_app(engine: str, token: str) -> Any:
    from celery import Celery

    broker = REDIS if engine == "redis" else AMQP
    app = Celery(f"tasks_{token}", broker=broker, backend=REDIS)
    app.conf.task_default_queue = f"tasks_{token}"
    app.conf.task_acks_late = True
    app.conf.result_expires = 120  # its result keys carry no token to clean up by: let them go
    app.conf.worker_prefetch_multiplier = 4
    app.conf.broker_connection_retry_on_startup = True
    if engine == "amqp":
        app.conf.broker_transport_options = {"confirm_publish": True}

    @app.task(name="bench.add")
    def add(x: int, y: int) -> int:
        return x + y

    return app, add


def celery_worker(engine: str, token: str) -> None:
    app, _ = celery_app(engine, token)
    app.worker_main(["worker", "--pool=prefork", "-c", "2", "--loglevel=WARNING",
                     "--without-mingle", "--without-gossip"])  # fmt: skip


def run_celery(engine: str, n: int, calls: int, token: str, processes: int) -> dict[str, Any]:
    """Celery's worker is always a process of its own (prefork, 2 children): ``processes``
    is not used."""
    worker = multiprocessing.Process(target=celery_worker, args=(engine, token), daemon=True)
    worker.start()
    try:
        _, add = celery_app(engine, token)
        add.delay(0, 0).get(timeout=120)  # the worker is up
        return measure(add.delay, lambda r: r.get(timeout=120), n, calls, cputime.SERVERS[engine])
    finally:
        worker.terminate()
        worker.join(10)


def dramatiq_setup(engine: str, token: str) -> tuple[Any, Any]:
    import dramatiq
    from dramatiq.results import Results
    from dramatiq.results.backends import RedisBackend

    if engine == "redis":
        from dramatiq.brokers.redis import RedisBroker

        broker: Any = RedisBroker(url=REDIS, namespace=f"tasks_{token}")
    else:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=AMQP.rstrip("/") + "/%2F", confirm_delivery=True)
    broker.add_middleware(Results(backend=RedisBackend(url=REDIS, namespace=f"res_{token}")))
    dramatiq.set_broker(broker)

    # result keys are bare md5 names (no token to clean up by): they go 2 min after the run
    @dramatiq.actor(queue_name=f"tasks_{token}", store_results=True, result_ttl=120_000)
    def add(x: int, y: int) -> int:
        return x + y

    return broker, add


def dramatiq_worker(engine: str, token: str, stop: Any) -> None:
    """A Dramatiq worker (8 threads) in a process of its own, until ``stop`` is set."""
    import dramatiq

    broker, _ = dramatiq_setup(engine, token)
    worker = dramatiq.Worker(broker, worker_threads=8)
    worker.start()
    stop.wait()
    worker.stop(timeout=5000)
    broker.close()


def run_dramatiq(engine: str, n: int, calls: int, token: str, processes: int) -> dict[str, Any]:
    import dramatiq

    broker, add = dramatiq_setup(engine, token)
    stop = multiprocessing.Event()
    started = [
        multiprocessing.Process(target=dramatiq_worker, args=(engine, token, stop), daemon=True)
        for _ in range(processes)
    ]
    for process in started:
        process.start()
    worker = None
    if not processes:  # the worker's threads in this process
        worker = dramatiq.Worker(broker, worker_threads=8)
        worker.start()
    try:
        get = lambda m: m.get_result(block=True, timeout=120_000)  # noqa: E731
        return measure(add.send, get, n, calls, cputime.SERVERS[engine])
    finally:
        stop.set()
        for process in started:
            process.join(10)
        if worker is not None:
            worker.stop(timeout=5000)
        broker.close()


def measure(
    send: Callable[[int, int], Any],
    get: Callable[[Any], Any],
    n: int,
    calls: int,
    engines: tuple[str, ...],
) -> dict[str, Any]:
    for i in range(50):
        get(send(i, i))
    times = []
    for i in range(calls):
        started = time.perf_counter()
        assert get(send(i, i)) == 2 * i
        times.append(time.perf_counter() - started)
    times.sort()
    out: dict[str, Any] = {
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": times[int(len(times) * 0.99) - 1] * 1000,
    }
    cpu = cputime.snapshot(engines)
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        handles = list(pool.map(lambda i: send(i, 1), range(n)))
        submitted = time.perf_counter() - started
        values = list(pool.map(get, handles))
    elapsed = time.perf_counter() - started
    out |= cputime.per_task(cpu, cputime.snapshot(engines), n)
    assert values == [i + 1 for i in range(n)]
    out["submit_per_s"] = n / submitted
    out["tasks_per_s"] = n / elapsed
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peer", choices=["celery", "dramatiq"])
    parser.add_argument("engine", choices=["redis", "amqp"])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument(
        "--workers", type=int, default=0, help="Dramatiq worker processes (0: in this one)"
    )
    args = parser.parse_args()
    run = run_celery if args.peer == "celery" else run_dramatiq
    token = uuid.uuid4().hex[:8]
    try:
        row = run(args.engine, args.n, args.calls, token, args.workers)
    finally:
        cleanup(args.engine, token)
    print(json.dumps({"engine": args.engine, "peer": args.peer, **row}), flush=True)


def cleanup(engine: str, token: str) -> None:
    """Delete the queues and keys this run made (bench/peers/cleanup.py)."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parent / "cleanup.py"), engine, token],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        print(f"cleanup of {token} on {engine} failed: {done.stderr.strip()}", file=sys.stderr)


if __name__ == "__main__":
    main()
