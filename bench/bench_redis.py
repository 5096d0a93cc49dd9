#!/usr/bin/env python
"""Throughput and latency of the ``redis://`` transport against raw redis-py, same run.

Every figure is measured with two separate processes (producer and consumer, sender and
receiver, caller and responder), once through microhive (real MicroAgent instances) and
once with plain redis-py asyncio doing the same work with the same guarantee:

- queue: Redis Streams and a consumer group; the producer waits for each XADD's reply
  (128 in flight: 128 sending tasks for microhive, pipelines of 128 for redis-py), the
  consumer (prefetch/COUNT 64) decodes the JSON envelope, runs the handler and only then
  XACKs. Measured from the first send to the last acknowledgement.
- signals: PUBLISH of JSON envelopes to a channel, decoded by a subscriber in the other
  process (at most once; raw redis-py pipelines 128 PUBLISHes at a time).
- calls: one request at a time over PUBLISH/SUBSCRIBE, the answer published to the
  caller's own reply channel; p50 and p99 of the round trip.

    .venv/bin/python bench/bench_redis.py                 # defaults, about a minute
    .venv/bin/python bench/bench_redis.py --messages 20000 --signals 20000 --calls 2000
    .venv/bin/python bench/bench_redis.py --url redis://127.0.0.1:6380/0 --json

Keys live under a random prefix and are deleted afterwards. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import secrets
import sys
import time
from collections.abc import Callable
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
PREFETCH = 64  # consumer concurrency (microhive) = XREADGROUP COUNT (raw)
IN_FLIGHT = 128  # unanswered XADDs / PUBLISHes per producer

QUEUE_TARGET = 30_000.0  # messages/s, first send -> last ack
SIGNALS_TARGET = 50_000.0  # signals/s, first send -> last received
P50_TARGET = 1_000.0  # µs
P99_TARGET = 3_000.0  # µs
RATIO_TARGET = 0.8


def _envelope(kind: str, name: str, payload: Any, **extra: Any) -> bytes:
    """What raw redis-py puts on the wire: the same envelope microhive writes."""
    message_id = secrets.token_hex(16)
    document = {
        "v": 1,
        "id": message_id,
        "kind": kind,
        "name": name,
        "sender": "bench",
        "payload": payload,
        "headers": {},
        "correlation_id": extra.pop("correlation_id", None),
        "reply_to": extra.pop("reply_to", None),
        "sent_at": time.time(),
        "attempt": 1,
    }
    return orjson.dumps(document)


def _client(url: str) -> Any:
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(url.split("?", 1)[0])


def _with_prefix(url: str, prefix: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}prefix={prefix}"


def _run(coroutine: Any, results: Any, role: str) -> None:
    try:
        outcome = asyncio.run(coroutine)
    except BaseException as exc:
        outcome = {"error": f"{type(exc).__name__}: {exc}"}
    results.put((role, outcome))


# -- queue ---------------------------------------------------------------------------------


class WorkSink(MicroAgent):
    count = 0
    expected = 0

    @consumer(WORK, concurrency=PREFETCH)
    async def work(self, n: int) -> None:
        self.count += 1
        if self.count == self.expected:
            self.settings["done"].set()


async def queue_consumer_mh(url: str, prefix: str, n: int, ready: Any) -> dict[str, Any]:
    broker = QueueBroker.from_url(_with_prefix(url, prefix), queues=[WORK])
    done = asyncio.Event()
    sink = WorkSink(broker=broker, settings={"done": done})
    sink.expected = n
    async with broker, sink:
        ready.set()
        await done.wait()
        while await broker.length(WORK):  # noqa: ASYNC110 - the last acks are on their way
            await asyncio.sleep(0.001)
        end = time.time()
    return {"end": end, "count": sink.count}


async def queue_producer_mh(url: str, prefix: str, n: int) -> dict[str, Any]:
    async with QueueBroker.from_url(_with_prefix(url, prefix), queues=[WORK]) as broker:

        async def sender(first: int) -> None:
            for i in range(first, n, IN_FLIGHT):
                await broker.send(WORK, {"n": i}, sender="bench")

        start = time.time()
        await asyncio.gather(*(sender(k) for k in range(IN_FLIGHT)))
        sent = time.time()
    return {"start": start, "sent": sent}


async def queue_consumer_raw(url: str, prefix: str, n: int, ready: Any) -> dict[str, Any]:
    client = _client(url)
    stream = f"{prefix}raw:{WORK.name}"
    count = 0

    async def work(n: int) -> None:
        nonlocal count
        count += 1

    await client.xgroup_create(stream, "bench", id="0", mkstream=True)
    ready.set()
    while count < n:
        reply = await client.xreadgroup("bench", "raw", {stream: ">"}, count=PREFETCH, block=1000)
        if not reply:
            continue
        ids = []
        for entry_id, fields in reply[0][1]:
            await work(**orjson.loads(fields[b"data"])["payload"])
            ids.append(entry_id)
        await client.xack(stream, "bench", *ids)
    end = time.time()
    await client.aclose()
    return {"end": end, "count": count}


async def queue_producer_raw(url: str, prefix: str, n: int) -> dict[str, Any]:
    client = _client(url)
    stream = f"{prefix}raw:{WORK.name}"
    start = time.time()
    for first in range(0, n, IN_FLIGHT):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(n, first + IN_FLIGHT)):
            pipe.xadd(stream, {"data": _envelope("message", WORK.name, {"n": i})})
        await pipe.execute()
    sent = time.time()
    await client.aclose()
    return {"start": start, "sent": sent}


# -- signals -------------------------------------------------------------------------------


class SignalSink(MicroAgent):
    count = 0
    last = 0.0

    @receiver(TICK)
    async def tick(self, n: int) -> None:
        self.count += 1
        self.last = time.time()


async def _until_quiet(count: Callable[[], int], n: int, quiet: float = 3.0) -> None:
    seen, since = -1, time.monotonic()
    while count() < n:
        if count() != seen:
            seen, since = count(), time.monotonic()
        elif time.monotonic() - since > quiet:
            return  # some were lost (at most once): report what arrived
        await asyncio.sleep(0.005)


async def signal_receiver_mh(url: str, prefix: str, n: int, ready: Any) -> dict[str, Any]:
    bus = SignalBus.from_url(_with_prefix(url, prefix), signals=[TICK])
    sink = SignalSink(bus)
    async with bus, sink:
        ready.set()
        await _until_quiet(lambda: sink.count, n)
    return {"end": sink.last, "count": sink.count}


async def signal_sender_mh(url: str, prefix: str, n: int) -> dict[str, Any]:
    async with SignalBus.from_url(_with_prefix(url, prefix), signals=[TICK]) as bus:
        start = time.time()
        for i in range(n):
            await bus.send(TICK, "bench", n=i)
    return {"start": start, "sent": time.time()}


async def signal_receiver_raw(url: str, prefix: str, n: int, ready: Any) -> dict[str, Any]:
    client = _client(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(f"{prefix}raw:{TICK.name}")
    count, last = 0, 0.0

    async def tick(n: int) -> None:
        nonlocal count, last
        count += 1
        last = time.time()

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                await tick(**orjson.loads(message["data"])["payload"])

    task = asyncio.get_running_loop().create_task(listen())
    ready.set()
    await _until_quiet(lambda: count, n)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await pubsub.aclose()
    await client.aclose()
    return {"end": last, "count": count}


async def signal_sender_raw(url: str, prefix: str, n: int) -> dict[str, Any]:
    client = _client(url)
    channel = f"{prefix}raw:{TICK.name}"
    start = time.time()
    for first in range(0, n, IN_FLIGHT):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(n, first + IN_FLIGHT)):
            pipe.publish(channel, _envelope("signal", TICK.name, {"n": i}))
        await pipe.execute()
    sent = time.time()
    await client.aclose()
    return {"start": start, "sent": sent}


# -- calls ---------------------------------------------------------------------------------


class Responder(MicroAgent):
    @receiver(ASK)
    async def ask(self, n: int) -> int:
        return n + 1


async def responder_mh(url: str, prefix: str, n: int, ready: Any) -> dict[str, Any]:
    bus = SignalBus.from_url(_with_prefix(url, prefix), signals=[ASK])
    async with bus, Responder(bus):
        ready.set()
        await _wait_for_stop(url, prefix)
    return {}


async def caller_mh(url: str, prefix: str, n: int) -> dict[str, Any]:
    times = []
    async with SignalBus.from_url(_with_prefix(url, prefix), signals=[ASK]) as bus:
        for i in range(min(500, n)):  # warm up
            await bus.call(ASK, "bench", n=i, timeout=5)
        clock = time.perf_counter_ns
        for i in range(n):
            started = clock()
            value = await bus.call(ASK, "bench", n=i, timeout=5)
            times.append(clock() - started)
            assert value == i + 1
    await _stop(url, prefix)
    return {"times": times}


async def responder_raw(url: str, prefix: str, n: int, ready: Any) -> dict[str, Any]:
    client = _client(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(f"{prefix}raw:{ASK.name}")

    async def ask(n: int) -> int:
        return n + 1

    async def serve() -> None:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            request = orjson.loads(message["data"])
            value = await ask(**request["payload"])
            reply = _envelope(
                "reply",
                request["name"],
                {"ok": True, "value": value},
                correlation_id=request["correlation_id"],
            )
            await client.publish(request["reply_to"], reply)

    task = asyncio.get_running_loop().create_task(serve())
    ready.set()
    await _wait_for_stop(url, prefix)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await pubsub.aclose()
    await client.aclose()
    return {}


async def caller_raw(url: str, prefix: str, n: int) -> dict[str, Any]:
    client = _client(url)
    pubsub = client.pubsub()
    inbox = f"{prefix}raw:reply.{secrets.token_hex(16)}"
    await pubsub.subscribe(inbox)
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    channel = f"{prefix}raw:{ASK.name}"

    async def call(n: int) -> Any:
        request_id = secrets.token_hex(16)
        request = _envelope("call", ASK.name, {"n": n}, correlation_id=request_id, reply_to=inbox)
        await client.publish(channel, request)
        while True:
            message = await pubsub.get_message(timeout=5)
            if message is None:
                raise TimeoutError("no answer")
            if message["type"] == "message":
                reply = orjson.loads(message["data"])
                if reply["correlation_id"] == request_id:
                    return reply["payload"]["value"]

    for i in range(min(500, n)):
        await call(i)
    times = []
    clock = time.perf_counter_ns
    for i in range(n):
        started = clock()
        value = await call(i)
        times.append(clock() - started)
        assert value == i + 1
    await pubsub.aclose()
    await client.aclose()
    await _stop(url, prefix)
    return {"times": times}


async def _stop(url: str, prefix: str) -> None:
    client = _client(url)
    await client.set(f"{prefix}stop", 1, ex=60)
    await client.aclose()


async def _wait_for_stop(url: str, prefix: str) -> None:
    client = _client(url)
    while not await client.exists(f"{prefix}stop"):  # noqa: ASYNC110 - another process sets it
        await asyncio.sleep(0.05)
    await client.aclose()


# -- orchestration -------------------------------------------------------------------------

Side = Callable[..., Any]


def _side(function: Side, results: Any, role: str, *args: Any) -> None:
    _run(function(*args), results, role)


def pair(url: str, n: int, waiting: Side, active: Side) -> dict[str, dict[str, Any]]:
    """Run ``waiting`` (consumer side) and, once it is ready, ``active`` in two processes."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    ready = context.Event()
    prefix = f"microhive-bench.{secrets.token_hex(4)}:"
    first = context.Process(target=_side, args=(waiting, results, "waiting", url, prefix, n, ready))
    first.start()
    try:
        if not ready.wait(30):
            raise RuntimeError(f"{waiting.__name__} did not get ready")
        second = context.Process(target=_side, args=(active, results, "active", url, prefix, n))
        second.start()
        outcome = dict(results.get(timeout=600) for _ in range(2))
        second.join(30)
    finally:
        first.join(30)
        if first.is_alive():
            first.kill()
        asyncio.run(_cleanup(url, prefix))
    for role, data in outcome.items():
        if "error" in data:
            raise RuntimeError(f"{role} side failed: {data['error']}")
    return outcome


async def _cleanup(url: str, prefix: str) -> None:
    client = _client(url)
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def rate(outcome: dict[str, dict[str, Any]]) -> tuple[float, int]:
    count = outcome["waiting"]["count"]
    seconds = outcome["waiting"]["end"] - outcome["active"]["start"]
    return count / seconds, count


def percentile(times: list[int], q: float) -> float:
    ordered = sorted(times)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index] / 1000  # ns -> µs


@dataclass
class Result:
    metric: str
    unit: str
    microhive: float
    raw: float
    target: float
    higher_is_better: bool
    note: str = ""

    @property
    def ratio(self) -> float:
        """How many times raw's performance microhive reaches (> 1: faster than raw)."""
        if self.higher_is_better:
            return self.microhive / self.raw
        return self.raw / self.microhive

    @property
    def passed(self) -> bool:
        meets = (
            self.microhive >= self.target
            if self.higher_is_better
            else self.microhive <= (self.target)
        )
        return meets and self.ratio >= RATIO_TARGET


def measure(url: str, messages: int, signals: int, calls: int, rounds: int) -> list[Result]:
    best: dict[str, float] = {}
    notes: dict[str, str] = {}

    def keep(key: str, value: float, higher: bool) -> None:
        if key not in best or (value > best[key] if higher else value < best[key]):
            best[key] = value

    for _ in range(rounds):
        for kind, waiting, active in (
            ("raw", queue_consumer_raw, queue_producer_raw),
            ("mh", queue_consumer_mh, queue_producer_mh),
        ):
            value, count = rate(pair(url, messages, waiting, active))
            keep(f"queue.{kind}", value, True)
        for kind, waiting, active in (
            ("raw", signal_receiver_raw, signal_sender_raw),
            ("mh", signal_receiver_mh, signal_sender_mh),
        ):
            value, count = rate(pair(url, signals, waiting, active))
            if count < signals:
                notes[f"signals.{kind}"] = f"{kind}: {signals - count} lost"
            keep(f"signals.{kind}", value, True)
        for kind, waiting, active in (
            ("raw", responder_raw, caller_raw),
            ("mh", responder_mh, caller_mh),
        ):
            times = pair(url, calls, waiting, active)["active"]["times"]
            keep(f"p50.{kind}", percentile(times, 50), False)
            keep(f"p99.{kind}", percentile(times, 99), False)

    def note(key: str) -> str:
        return "; ".join(v for k, v in notes.items() if k.startswith(key))

    queue = Result(
        "queue send -> ack", "msg/s", best["queue.mh"], best["queue.raw"], QUEUE_TARGET, True
    )
    signals = Result(
        "signals send -> receiver",
        "msg/s",
        best["signals.mh"],
        best["signals.raw"],
        SIGNALS_TARGET,
        True,
        note("signals"),
    )
    p50 = Result("call round trip p50", "µs", best["p50.mh"], best["p50.raw"], P50_TARGET, False)
    p99 = Result("call round trip p99", "µs", best["p99.mh"], best["p99.raw"], P99_TARGET, False)
    return [queue, signals, p50, p99]


def _number(value: float, unit: str) -> str:
    return f"{value:,.0f}"


def table(results: list[Result]) -> str:
    rows = [("metric", "microhive", "raw redis-py", "ratio", "target", "result")]
    for r in results:
        sign = ">=" if r.higher_is_better else "<="
        rows.append(
            (
                r.metric,
                f"{_number(r.microhive, r.unit)} {r.unit}",
                f"{_number(r.raw, r.unit)} {r.unit}",
                f"{r.ratio:.2f}",
                f"{sign} {_number(r.target, r.unit)} {r.unit}, ratio >= {RATIO_TARGET}",
                ("PASS" if r.passed else "MISS") + (f" ({r.note})" if r.note else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(width) if column in (0, 5) else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0", help="Redis to use")
    parser.add_argument("--messages", type=int, default=100_000, help="queue messages per run")
    parser.add_argument("--signals", type=int, default=100_000, help="signals per run")
    parser.add_argument("--calls", type=int, default=5_000, help="sequential calls per run")
    parser.add_argument(
        "--rounds", type=int, default=2, help="runs per figure; the best of each is kept (2)"
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if min(args.messages, args.signals, args.calls, args.rounds) < 1:
        parser.error("counts and --rounds must be >= 1")

    started = time.perf_counter()
    results = measure(args.url, args.messages, args.signals, args.calls, args.rounds)
    elapsed = time.perf_counter() - started
    missed = [r.metric for r in results if not r.passed]
    if args.json:
        document = {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "messages": args.messages,
            "signals": args.signals,
            "calls": args.calls,
            "rounds": args.rounds,
            "seconds": round(elapsed, 1),
            "results": [
                {**asdict(r), "ratio": round(r.ratio, 3), "passed": r.passed} for r in results
            ],
            "passed": not missed,
        }
        print(json.dumps(document, indent=2))
    else:
        print(
            f"microhive redis:// benchmark - Python {platform.python_version()}, "
            f"{os.cpu_count()} CPU(s), messages={args.messages:,}, signals={args.signals:,}, "
            f"calls={args.calls:,}, best of {args.rounds}, separate processes"
        )
        print()
        print(table(results))
        print()
        print(
            "ratio = how much of raw redis-py's performance microhive reaches "
            "(throughput: microhive/raw, latency: raw/microhive; > 1 is faster than raw)."
        )
        print(f"{len(results) - len(missed)} of {len(results)} figures met, {elapsed:.1f} s")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
