#!/usr/bin/env python
"""Takeover time of single-runner schedules: SIGKILL the replica holding the lease, and time
until another replica runs its first tick.

Per engine and run: three replica processes of an agent with
``@periodic(0.1, single=True, lease_ttl=TTL)``, each appending ``<wall time> <tick>`` per
tick it claimed (from the schedule's debug record, just before the job runs) to a file of its
own; once ticks flow, the replica that ran the last one is SIGKILLed. The
takeover time is the wall time of the first tick run by another replica after the kill,
minus the time of the kill. The median over ``--runs`` is printed with min and max, and
the check that no tick ran twice.

The takeover is bounded by the lease TTL: the lease has to expire (redis, nats), the engine
has to notice the dead connection (amqp: at once, the socket closes) or the group
coordinator the missing heartbeats (kafka: ``session_timeout`` = TTL, then a rebalance),
then the next renewal round of a replica (every TTL / 3) takes it, and the next tick runs.

    .venv/bin/python bench/bench_leases.py                       # ttl 2 s, 3 runs per engine
    .venv/bin/python bench/bench_leases.py --engines redis,nats --ttl 1 --runs 5 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script from a checkout: import the package beside it
    sys.path.insert(0, str(ROOT))

from microhive import MicroAgent, QueueBroker, periodic  # noqa: E402

PERIOD = 0.1
URLS = {
    "redis": "redis://127.0.0.1:6379/0?prefix={prefix}:",
    "amqp": "amqp://guest:guest@127.0.0.1:5672/?prefix={prefix}.",
    "nats": "nats://127.0.0.1:4222?prefix={prefix}",
    "kafka": "kafka://127.0.0.1:9092?prefix={prefix}",
}


def replica(url: str, record: str, ttl: float) -> None:
    """One replica (a process of its own): runs the schedule until it is killed."""

    class Claimed(logging.Handler):
        """Writes each tick the schedule claimed (its debug record carries the number)."""

        def emit(self, record: logging.LogRecord) -> None:
            tick = getattr(record, "tick", None)
            if isinstance(tick, int):
                out.write(f"{record.created:.6f} {tick}\n")

    class BenchTicker(MicroAgent):
        @periodic(PERIOD, single=True, lease_ttl=ttl)
        async def tick(self) -> None:
            pass

    out = open(f"{record}.{os.getpid()}", "a", buffering=1)  # noqa: SIM115
    logger = logging.getLogger("microhive.agent.BenchTicker")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(Claimed(logging.DEBUG))

    async def main() -> None:
        async with QueueBroker.from_url(url) as broker, BenchTicker(broker=broker):
            print("ready", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())


def _lines(directory: Path) -> dict[int, list[tuple[float, int]]]:
    found: dict[int, list[tuple[float, int]]] = {}
    for path in directory.glob("ticks.*"):
        rows = []
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                rows.append((float(parts[0]), int(parts[1])))
        found[int(path.suffix[1:])] = rows
    return found


def _wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.005)
    raise TimeoutError(f"no {what} within {timeout} s")


def one_run(engine: str, url: str, ttl: float) -> tuple[float, int]:
    """Seconds from SIGKILL of the holder to the first tick of another replica, and the
    number of ticks that ran more than once."""
    with TemporaryDirectory() as tmp:
        directory = Path(tmp)
        command = [sys.executable, __file__, "--replica", url, str(directory / "ticks"), str(ttl)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        processes = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(3)
        ]
        try:
            for process in processes:
                assert process.stdout is not None
                if process.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"{engine}: a replica did not start")
            _wait(lambda: sum(len(r) for r in _lines(directory).values()) >= 10, 60, "ticks")
            by_pid = _lines(directory)
            holder = max(by_pid, key=lambda pid: max((t for _, t in by_pid[pid]), default=-1))
            victim = next(p for p in processes if p.pid == holder)
            victim.send_signal(signal.SIGKILL)
            killed = time.time()
            victim.wait()

            def first_after() -> float | None:
                times = [
                    at
                    for pid, rows in _lines(directory).items()
                    if pid != holder
                    for at, _ in rows
                    if at > killed
                ]
                return min(times) if times else None

            taken = _wait(first_after, 120, "takeover")
        finally:
            for process in processes:
                process.kill()
                process.wait()
        ticks = [t for rows in _lines(directory).values() for _, t in rows]
        return taken - killed, len(ticks) - len(set(ticks))


async def cleanup(engine: str, url: str, prefix: str) -> None:
    """Remove what the leases left on the engine (tick records, topics, buckets)."""
    name = "BenchTicker.tick"
    if engine == "redis":
        import redis.asyncio as aioredis

        redis = aioredis.Redis(host="127.0.0.1", port=6379)
        await redis.delete(f"{prefix}:lease:{name}", f"{prefix}:lease:{name}:tick")
        await redis.aclose()
    elif engine == "amqp":
        import aiormq

        connection = await aiormq.connect("amqp://guest:guest@127.0.0.1:5672/")
        channel = await connection.channel()
        await channel.queue_delete(f"{prefix}.microhive:lease:{name}:tick")
        await connection.close()
    elif engine == "nats":
        import nats

        client = await nats.connect("nats://127.0.0.1:4222")
        js = client.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(f"KV_{prefix}_"):
                await js.delete_stream(info.config.name)
        await client.close()
    elif engine == "kafka":
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:9092")
        await admin.start()
        with contextlib.suppress(Exception):
            await admin.delete_topics([f"{prefix}.lease.{name}"])
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="redis,amqp,nats,kafka")
    parser.add_argument("--ttl", type=float, default=2.0, help="lease_ttl in seconds")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--replica", nargs=3, metavar=("URL", "RECORD", "TTL"))
    args = parser.parse_args()
    if args.replica:
        url, record, ttl = args.replica
        replica(url, record, float(ttl))
        return
    results: dict[str, dict[str, Any]] = {}
    for engine in args.engines.split(","):
        prefix = f"bench-lease-{secrets.token_hex(4)}"
        url = URLS[engine].format(prefix=prefix)
        times, twice = [], 0
        try:
            for _ in range(args.runs):
                taken, duplicates = one_run(engine, url, args.ttl)
                times.append(taken)
                twice += duplicates
        finally:
            asyncio.run(cleanup(engine, url, prefix))
        results[engine] = {
            "median_s": statistics.median(times),
            "min_s": min(times),
            "max_s": max(times),
            "ticks_run_twice": twice,
        }
        if not args.json:
            print(
                f"{engine:6} takeover median {statistics.median(times):.2f} s "
                f"(min {min(times):.2f}, max {max(times):.2f}, {args.runs} runs, "
                f"lease_ttl {args.ttl:g} s); ticks run twice: {twice}",
                flush=True,
            )
    if args.json:
        print(json.dumps({"ttl": args.ttl, "period": PERIOD, "engines": results}, indent=2))


if __name__ == "__main__":
    main()
