#!/usr/bin/env python
"""Tasks with results: submit → result round trip, throughput end to end, a group of 1,000.

For each engine, a ``@task(add, concurrency=64)`` agent runs in the caller's process, or
with ``--workers N`` in N processes of its own (as Celery's worker always is; the Dramatiq
peer's worker then too), and the caller:

- **round trip**: one ``await (await broker.add.submit(x=i, y=i)).result()`` at a time,
  p50 / p99 of ``--calls`` after 50 untimed;
- **tasks/s**: ``--n`` submits with 64 in flight, then every result awaited by 16
  fetchers, each taking its share in order (as the peers' 16 threads do); from the first
  submit to the last result;
- **group of 1,000**: ``await (await broker.submit(group(...1,000 add.s(...)))).result()``.

    .venv/bin/python bench/bench_tasks.py                          # memory, redis, amqp
    .venv/bin/python bench/bench_tasks.py --engines memory --n 2000
    .venv/bin/python bench/bench_tasks.py --workers 1      # the worker in a process of its own
    .venv/bin/python bench/bench_tasks.py --json

AMQP keeps results in Redis (``?results=redis://...``). ``--peers celery,dramatiq`` runs
Celery (``acks_late``, its result backend on the same engine) and Dramatiq (the ``Results``
middleware on Redis) on the same engines in the same run with bench/peers/tasks_peers.py and
the peers' venv (``bench/peers/setup.sh`` once; ``PEERS_PYTHON`` to choose another), and
prints microhive's ratio to each. On Redis and RabbitMQ a **raw** row does the same work by
hand with redis-py and aio-pika (bench/raw_tasks.py; ``--no-raw`` skips it), its workers laid
out as ours. The last columns are the CPU each task cost during the tasks/s phase, in µs:
``client`` (this process and every process it started: workers, prefork children) and each
engine's server on this machine (bench/peers/cputime.py): on two cores, what caps tasks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

if __package__ in (None, ""):  # run as a script from a checkout: import the package beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from microhive import MicroAgent, Namespace, Queue, QueueBroker, group, task
from microhive.envelope import new_id

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))  # shared with the peers' side
import cputime
from raw_tasks import RawTasks, raw_tasks

QUEUES = Namespace([Queue("bench_add", providing_args=["x", "y"])], kind="queue")
REDIS = "redis://127.0.0.1:6379/0"
FETCHERS = 16
"""Concurrent result fetchers, as the peers' thread pool (bench/peers/tasks_peers.py)."""
AMQP = "amqp://guest:guest@127.0.0.1:5672/"


class Adder(MicroAgent):
    @task(QUEUES.bench_add, concurrency=64)
    async def add(self, x: int, y: int) -> int:
        return x + y


def url_for(engine: str, token: str) -> str:
    if engine == "memory":
        return f"memory://bench-{token}"
    if engine == "redis":
        return f"{REDIS}?prefix=bench-tasks-{token}:"
    if engine == "amqp":
        results = quote(f"{REDIS}?prefix=bench-tasks-{token}:", safe="")
        return f"{AMQP}?prefix=bench-tasks-{token}&results={results}"
    raise SystemExit(f"unknown engine {engine!r}")


async def serve(url: str) -> None:
    """A worker process (``--serve URL``): runs the agent until its stdin closes."""
    if url.startswith("raw:"):  # the raw clients' worker (bench/raw_tasks.py): raw:ENGINE:TOKEN
        _, engine, token = url.split(":")
        side = RawTasks(engine, token)
        await side.connect()
        await side.serve()
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.read)
        await side.close(clean=False)
        return
    broker = QueueBroker.from_url(url, queues=QUEUES)
    await broker.connect()
    async with Adder(None, broker):
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.read)
    await broker.close()


async def start_processes(what: str, count: int) -> Callable[[], Awaitable[None]]:
    """``count`` worker processes serving ``what`` (``--serve``); returns how to stop them."""
    command = [sys.executable, __file__, "--serve", what]
    started = [
        await asyncio.create_subprocess_exec(
            *command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for _ in range(count)
    ]

    async def stop() -> None:
        for process in started:
            assert process.stdin is not None
            process.stdin.close()
        for process in started:
            await process.wait()

    for process in started:
        assert process.stdout is not None
        if (await process.stdout.readline()).strip() != b"ready":
            await stop()
            raise RuntimeError("a worker process did not start")
    return stop


@contextlib.asynccontextmanager
async def workers(url: str, broker: QueueBroker, count: int) -> AsyncIterator[None]:
    """``count`` worker processes, or (0) the agent in this process."""
    if count == 0:
        async with Adder(None, broker):
            yield
        return
    stop = await start_processes(url, count)
    try:
        yield
    finally:
        await stop()


async def phases(
    engine: str, submit: Callable[[int, int], Awaitable[Any]], n: int, calls: int
) -> dict[str, Any]:
    """Round trip and throughput; ``submit(x, y)`` returns an awaitable of the result."""
    out: dict[str, Any] = {}
    for i in range(50):
        await asyncio.wait_for(await submit(i, i), 30)
    times = []
    for i in range(calls):
        started = time.perf_counter()
        await asyncio.wait_for(await submit(i, i), 30)
        times.append(time.perf_counter() - started)
    times.sort()
    out["p50_ms"] = statistics.median(times) * 1000
    out["p99_ms"] = times[int(len(times) * 0.99) - 1] * 1000

    waits: list[Any] = [None] * n

    async def lane(first: int) -> None:
        for i in range(first, n, 64):
            waits[i] = await submit(i, 1)

    cpu = cputime.snapshot(cputime.SERVERS[engine])
    started = time.perf_counter()
    await asyncio.gather(*(lane(k) for k in range(64)))
    submitted = time.perf_counter() - started
    values: list[Any] = [None] * n

    async def fetch(first: int) -> None:  # as the peers' 16 threads: each its share, in order
        for i in range(first, n, FETCHERS):
            values[i] = await waits[i]

    await asyncio.wait_for(asyncio.gather(*(fetch(k) for k in range(FETCHERS))), 120)
    elapsed = time.perf_counter() - started
    out |= cputime.per_task(cpu, cputime.snapshot(cputime.SERVERS[engine]), n)
    assert values == [i + 1 for i in range(n)]
    out["submit_per_s"] = n / submitted
    out["tasks_per_s"] = n / elapsed
    return out


async def measure_raw(engine: str, n: int, calls: int, worker_processes: int) -> dict[str, Any]:
    """The same work with redis-py and aio-pika by hand (bench/raw_tasks.py)."""
    token = new_id()[:8]
    start = None
    if worker_processes:

        async def start() -> Callable[[], Awaitable[None]]:
            return await start_processes(f"raw:{engine}:{token}", worker_processes)

    async with raw_tasks(engine, token, start) as side:
        return await phases(engine, side.submit, n, calls)


async def measure(engine: str, n: int, calls: int, worker_processes: int = 0) -> dict[str, Any]:
    token = new_id()[:8]
    url = url_for(engine, token)
    if engine == "memory":  # one process is all memory:// has
        worker_processes = 0
    broker = QueueBroker.from_url(url, queues=QUEUES)
    await broker.connect()
    handle = broker.bench_add
    out: dict[str, Any] = {"engine": engine, "worker_processes": worker_processes}

    async def submit(x: int, y: int) -> Awaitable[Any]:
        return (await handle.submit(x=x, y=y)).result(timeout=120)

    async with workers(url, broker, worker_processes):
        out |= await phases(engine, submit, n, calls)
        started = time.perf_counter()
        job = await broker.submit(group(QUEUES.bench_add.s(x=i, y=i) for i in range(1000)))
        assert len(await job.result(timeout=120)) == 1000
        out["group_1000_s"] = time.perf_counter() - started
    await broker.close()
    # the queues and keys of this run (bench/peers/cleanup.py); on RabbitMQ the results in Redis
    for where in {"memory": [], "redis": ["redis"], "amqp": ["amqp", "redis"]}[engine]:
        cleanup = [sys.executable, str(HERE / "peers" / "cleanup.py"), where, token]
        done = await asyncio.to_thread(subprocess.run, cleanup, capture_output=True, check=False)
        if done.returncode != 0:  # say so: a run leaves ~3 keys per task behind for a day
            print(f"cleanup of {where} failed: {done.stderr.decode()[-300:]}", file=sys.stderr)
    return out


HERE = Path(__file__).resolve().parent
PEERS_PYTHON = os.environ.get("PEERS_PYTHON", str(HERE / "peers" / ".venv" / "bin" / "python"))


def peer_row(peer: str, engine: str, n: int, calls: int, workers: int) -> dict[str, Any]:
    """One peer on one engine, measured by bench/peers/tasks_peers.py in the peers' venv
    (Dramatiq's worker in ``workers`` processes of its own, as ours; Celery's always is)."""
    command = [PEERS_PYTHON, str(HERE / "peers" / "tasks_peers.py"), peer, engine]
    command += ["--n", str(n), "--calls", str(calls), "--workers", str(workers)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"engine": engine, "peer": peer, "error": str(exc)}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"engine": engine, "peer": peer, "error": tail}
    row: dict[str, Any] = json.loads(lines[-1])
    return row


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="memory,redis,amqp")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--peers", default="", help="celery,dramatiq (on redis and amqp)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--workers", type=int, default=0, help="worker processes (0: in the caller's process)"
    )
    parser.add_argument("--no-raw", action="store_true", help="skip the raw clients' row")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        await serve(args.serve)
        return
    rows = []
    for engine in args.engines.split(","):
        try:
            measured = await measure(engine, args.n, args.calls, args.workers)
            rows.append({"peer": "microhive", **measured})
        except Exception as exc:  # an engine not running: say so, go on
            rows.append({"engine": engine, "error": f"{type(exc).__name__}: {exc}"})
        if engine != "memory" and not args.no_raw:
            try:
                raw = await measure_raw(engine, args.n, args.calls, args.workers)
                rows.append({"engine": engine, "peer": "raw", **raw})
            except Exception as exc:
                rows.append({"engine": engine, "peer": "raw", "error": f"{exc!r}"})
        for peer in filter(None, args.peers.split(",")):
            if engine != "memory":
                rows.append(
                    await asyncio.to_thread(
                        peer_row, peer, engine, args.n, args.calls, args.workers
                    )
                )
    if args.json:
        print(json.dumps(rows))
        return
    columns = ("p50 ms", "p99 ms", "submit/s", "tasks/s", "group 1000", "ours x")
    cpu_columns = ("client", "redis", "amqp")  # CPU µs per task (bench/peers/cputime.py)
    print(
        f"{'engine':8} {'peer':10} "
        + " ".join(f"{c:>10}" for c in columns)
        + "   cpu µs/task: "
        + " ".join(f"{c:>7}" for c in cpu_columns)
    )
    ours = {r["engine"]: r for r in rows if r.get("peer") == "microhive"}
    for row in rows:
        where = f"{row['engine']:8} {row.get('peer', 'microhive'):10}"
        if "error" in row:
            print(f"{where} n/a ({row['error']})")
            continue
        group_s = f"{row['group_1000_s']:9.3f}s" if "group_1000_s" in row else f"{'':10}"
        mine = ours.get(row["engine"])
        ratio = (
            "" if mine is None or row is mine else f"{mine['tasks_per_s'] / row['tasks_per_s']:.1f}"
        )
        cpu = " ".join(
            f"{row[key]:7.0f}" if (key := f"cpu_us_{c}") in row else f"{'':7}" for c in cpu_columns
        )
        print(
            f"{where} {row['p50_ms']:10.2f} {row['p99_ms']:10.2f} "
            f"{row['submit_per_s']:10,.0f} {row['tasks_per_s']:10,.0f} {group_s} {ratio:>10}"
            f"                {cpu}"
        )


if __name__ == "__main__":
    asyncio.run(main())
