#!/usr/bin/env python
"""Throughput and latency of the ``memory://`` transport, through real MicroAgent instances.

Every figure is measured twice in the same run: once through microhive (a private
``memory://bench-<random>`` hive, real agents, real decorators) and once by a "raw"
baseline doing the same work with plain asyncio primitives and orjson. The ratio between
the two says what the framework costs; the targets say whether it is fast enough.

    .venv/bin/python bench/bench_memory.py            # default sizes, < 60 s on 2 cores
    .venv/bin/python bench/bench_memory.py --n 20000  # quicker
    .venv/bin/python bench/bench_memory.py --json     # machine-readable

See bench/README.md for how to read the table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):  # run as a script from a checkout: import the package beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from microhive import MicroAgent, Queue, QueueBroker, Signal, SignalBus, consumer, receiver

TICK = Signal("bench.tick", ["n"])
ASK = Signal("bench.ask", ["n"])
WORK = Queue("bench.work")
CONCURRENCY = 64

SIGNALS_TARGET = 200_000.0  # signals/s
MESSAGES_TARGET = 100_000.0  # messages/s, send -> ack
CALL_P50_TARGET = 50.0  # microseconds


def _hive() -> str:
    return f"memory://bench-{secrets.token_hex(6)}"


def _envelope(kind: str, name: str, payload: Any, **extra: Any) -> dict[str, Any]:
    """What the raw baselines put on the "wire": an envelope-shaped JSON document."""
    return {
        "v": 1,
        "id": secrets.token_hex(16),
        "kind": kind,
        "name": name,
        "sender": "bench",
        "payload": payload,
        "sent_at": time.time(),
        **extra,
    }


# -- the agents under test -----------------------------------------------------------------


class SignalSink(MicroAgent):
    """Counts ``bench.tick`` signals and resolves ``done`` at the expected count."""

    count = 0
    expected = 0
    done: asyncio.Future[None]

    @receiver(TICK)
    async def tick(self, n: int) -> None:
        self.count += 1
        if self.count == self.expected:
            self.done.set_result(None)


class WorkSink(MicroAgent):
    """Consumes ``bench.work`` with 64 concurrent handlers, counting messages."""

    count = 0
    expected = 0
    done: asyncio.Future[None]

    @consumer(WORK, concurrency=CONCURRENCY)
    async def work(self, n: int) -> None:
        self.count += 1
        if self.count == self.expected:
            self.done.set_result(None)


class Responder(MicroAgent):
    """Answers ``bench.ask`` calls with ``n + 1``."""

    @receiver(ASK)
    async def ask(self, n: int) -> int:
        return n + 1


def _expect(agent: SignalSink | WorkSink, n: int) -> asyncio.Future[None]:
    agent.count = 0
    agent.expected = n
    agent.done = asyncio.get_running_loop().create_future()
    return agent.done


# -- 1. signal throughput --------------------------------------------------------------------


async def signals_microhive(n: int) -> float:
    """Seconds for ``n`` signals from ``bus.send`` to the receiver of another bus."""
    url = _hive()
    async with SignalBus.from_url(url, signals=[TICK]) as sender:
        sink = SignalSink(SignalBus.from_url(url))
        async with sink:
            done = _expect(sink, n)
            start = time.perf_counter()
            for i in range(n):
                await sender.send(TICK, "bench", n=i)
            await done
            elapsed = time.perf_counter() - start
        await sink._bus.close()  # type: ignore[union-attr]
    return elapsed


async def signals_raw(n: int) -> float:
    """The same fan-out by hand: encode, hand bytes to a callback, decode, a task per message."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    count = 0

    async def handler(n: int) -> None:
        nonlocal count
        count += 1
        if count == expected:
            done.set_result(None)

    def on_data(data: bytes) -> None:
        document = orjson.loads(data)
        loop.create_task(handler(**document["payload"]))  # noqa: RUF006 - done is awaited

    listeners: dict[str, list[Callable[[bytes], None]]] = {TICK.name: [on_data]}

    async def publish(name: str, payload: dict[str, Any]) -> None:
        data = orjson.dumps(_envelope("signal", name, payload))
        for callback in listeners.get(name, ()):
            callback(data)

    expected = n
    start = time.perf_counter()
    for i in range(n):
        await publish(TICK.name, {"n": i})
    await done
    return time.perf_counter() - start


# -- 2. queue send -> ack --------------------------------------------------------------------


async def _drained(broker: QueueBroker) -> None:
    while await broker.length(WORK):  # noqa: ASYNC110 - polls the broker, no event to wait on
        await asyncio.sleep(0)


async def queue_microhive(n: int) -> float:
    """Seconds from the first ``broker.send`` until all ``n`` messages are acked."""
    url = _hive()
    async with QueueBroker.from_url(url, queues=[WORK]) as broker:
        sink = WorkSink(broker=QueueBroker.from_url(url))
        async with sink:
            done = _expect(sink, n)
            start = time.perf_counter()
            for i in range(n):
                await broker.send(WORK, {"n": i})
            await done
            await _drained(broker)
            elapsed = time.perf_counter() - start
        await sink._broker.close()  # type: ignore[union-attr]
    return elapsed


async def queue_microhive_backlog(n: int) -> float:
    """Seconds for an agent to consume and ack ``n`` messages queued before it started."""
    url = _hive()
    async with QueueBroker.from_url(url, queues=[WORK]) as broker:
        for i in range(n):
            await broker.send(WORK, {"n": i})
        sink = WorkSink(broker=QueueBroker.from_url(url))
        done = _expect(sink, n)
        start = time.perf_counter()
        await sink.start()
        await done
        await _drained(broker)
        elapsed = time.perf_counter() - start
        await sink.stop()
        await sink._broker.close()  # type: ignore[union-attr]
    return elapsed


async def _raw_queue(n: int, *, backlog: bool) -> float:
    """asyncio.Queue of orjson bytes and a pool of 64 consumer tasks; ack is task_done()."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    done = loop.create_future()
    count = 0

    async def handler(n: int) -> None:
        nonlocal count
        count += 1
        if count == n_expected:
            done.set_result(None)

    async def worker() -> None:
        while True:
            data = await queue.get()
            try:
                await handler(**orjson.loads(data)["payload"])
            finally:
                queue.task_done()

    async def send(payload: dict[str, Any]) -> None:
        await queue.put(orjson.dumps(_envelope("message", WORK.name, payload)))

    n_expected = n
    workers: list[asyncio.Task[None]] = []
    if not backlog:
        workers = [loop.create_task(worker()) for _ in range(CONCURRENCY)]
        await asyncio.sleep(0)
    else:
        for i in range(n):
            await send({"n": i})
    start = time.perf_counter()
    if backlog:
        workers = [loop.create_task(worker()) for _ in range(CONCURRENCY)]
    else:
        for i in range(n):
            await send({"n": i})
    await done
    await queue.join()
    elapsed = time.perf_counter() - start
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return elapsed


async def queue_raw(n: int) -> float:
    return await _raw_queue(n, backlog=False)


async def queue_raw_backlog(n: int) -> float:
    return await _raw_queue(n, backlog=True)


# -- 3. call latency -------------------------------------------------------------------------


async def calls_microhive(m: int) -> list[int]:
    """Nanoseconds of each of ``m`` sequential ``bus.call`` round trips to another bus."""
    url = _hive()
    times: list[int] = []
    async with SignalBus.from_url(url, signals=[ASK]) as caller:
        responder = Responder(SignalBus.from_url(url))
        async with responder:
            clock = time.perf_counter_ns
            for i in range(m):
                start = clock()
                value = await caller.call(ASK, "bench", n=i)
                times.append(clock() - start)
                assert value == i + 1
        await responder._bus.close()  # type: ignore[union-attr]
    return times


async def calls_raw(m: int) -> list[int]:
    """A future per call, resolved by a task that decodes the request and encodes the answer."""
    loop = asyncio.get_running_loop()
    times: list[int] = []

    async def respond(data: bytes, future: asyncio.Future[bytes]) -> None:
        request = orjson.loads(data)
        value = request["payload"]["n"] + 1
        reply = _envelope("reply", request["name"], {"ok": True, "value": value})
        future.set_result(orjson.dumps(reply))

    clock = time.perf_counter_ns
    for i in range(m):
        start = clock()
        future: asyncio.Future[bytes] = loop.create_future()
        request = _envelope("call", ASK.name, {"n": i}, reply_to="inbox")
        loop.create_task(respond(orjson.dumps(request), future))  # noqa: RUF006
        answer = orjson.loads(await future)
        times.append(clock() - start)
        assert answer["payload"]["value"] == i + 1
    return times


def _percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index] / 1000  # ns -> µs


# -- running and reporting -------------------------------------------------------------------


@dataclass
class Result:
    metric: str
    unit: str
    microhive: float
    raw: float
    ratio: float  # microhive / raw
    target: float | None
    higher_is_better: bool

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        if self.higher_is_better:
            return self.microhive >= self.target
        return self.microhive <= self.target


async def _best(function: Callable[[int], Awaitable[float]], n: int, repeat: int) -> float:
    """The fastest of ``repeat`` runs, in seconds (each after a full garbage collection)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        best = min(best, await function(n))
    return best


async def _best_calls(
    function: Callable[[int], Awaitable[list[int]]], m: int, repeat: int
) -> list[int]:
    """The run with the lowest median of ``repeat`` runs."""
    await function(min(m, 1000))  # warm up
    runs = []
    for _ in range(repeat):
        gc.collect()
        runs.append(await function(m))
    return min(runs, key=lambda times: _percentile(times, 50))


async def run(n: int, calls: int, repeat: int) -> list[Result]:
    results: list[Result] = []
    warmup = max(1, min(n, 2000))

    def throughput(metric: str, mh: float, raw: float, count: int, target: float) -> Result:
        mine, theirs = count / mh, count / raw
        return Result(metric, "msg/s", mine, theirs, mine / theirs, target, True)

    await signals_microhive(warmup)
    await signals_raw(warmup)
    mh = await _best(signals_microhive, n, repeat)
    raw = await _best(signals_raw, n, repeat)
    results.append(throughput("signals (send -> receiver)", mh, raw, n, SIGNALS_TARGET))

    await queue_microhive(warmup)
    await queue_raw(warmup)
    mh = await _best(queue_microhive, n, repeat)
    raw = await _best(queue_raw, n, repeat)
    results.append(throughput("queue send -> ack", mh, raw, n, MESSAGES_TARGET))

    mh = await _best(queue_microhive_backlog, n, repeat)
    raw = await _best(queue_raw_backlog, n, repeat)
    results.append(throughput("queue backlog -> ack", mh, raw, n, MESSAGES_TARGET))

    mine = await _best_calls(calls_microhive, calls, repeat)
    theirs = await _best_calls(calls_raw, calls, repeat)
    for q, target in ((50, CALL_P50_TARGET), (99, None)):
        a, b = _percentile(mine, q), _percentile(theirs, q)
        results.append(Result(f"call latency p{q}", "µs", a, b, a / b, target, False))
    return results


def _number(value: float, unit: str) -> str:
    return f"{value:,.1f}" if unit == "µs" else f"{value:,.0f}"


def table(results: list[Result]) -> str:
    rows = [("metric", "microhive", "raw", "ratio", "target", "result")]
    for r in results:
        if r.target is None:
            target, verdict = "-", "-"
        else:
            sign = ">=" if r.higher_is_better else "<="
            target = f"{sign} {_number(r.target, r.unit)} {r.unit}"
            verdict = "PASS" if r.passed else "MISS"
        rows.append(
            (
                r.metric,
                f"{_number(r.microhive, r.unit)} {r.unit}",
                f"{_number(r.raw, r.unit)} {r.unit}",
                f"{r.ratio:.2f}",
                target,
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n", type=int, default=100_000, help="signals and queue messages per run (100000)"
    )
    parser.add_argument(
        "--calls", type=int, default=None, help="sequential calls per run (default: n / 5)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; best kept (3)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeat < 1:
        parser.error("--n and --repeat must be >= 1")
    calls = args.calls if args.calls is not None else max(1, args.n // 5)

    started = time.perf_counter()
    results = asyncio.run(run(args.n, calls, args.repeat))
    elapsed = time.perf_counter() - started
    missed = [r.metric for r in results if r.passed is False]

    if args.json:
        document = {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "cpus": os.cpu_count(),
            "n": args.n,
            "calls": calls,
            "repeat": args.repeat,
            "seconds": round(elapsed, 2),
            "results": [{**asdict(r), "passed": r.passed} for r in results],
            "passed": not missed,
        }
        print(json.dumps(document, indent=2))
    else:
        print(
            f"microhive memory:// benchmark - Python {platform.python_version()}, "
            f"{os.cpu_count()} CPU(s), n={args.n:,}, calls={calls:,}, best of {args.repeat}"
        )
        print()
        print(table(results))
        print()
        print(
            "ratio = microhive / raw: throughput, higher is better (1.00 = as fast as raw); "
            "latency, lower is better."
        )
        print(f"{len(results) - len(missed)} of {len(results)} figures met, {elapsed:.1f} s")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
