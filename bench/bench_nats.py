#!/usr/bin/env python
"""Throughput and latency of the ``nats://`` transport against raw nats-py, same run.

Every figure is measured with two separate processes (producer and consumer, sender and
receiver, caller and responder), once through microhive (real MicroAgent instances) and
once with plain nats-py doing the same work with the same guarantee:

- queue (JetStream): a stream and a durable pull consumer with explicit acks; the producer
  waits for each publish acknowledgement (128 sends in flight: 128 sending tasks on both
  sides, ``js.publish`` for nats-py), the consumer (prefetch / fetch batch 64) decodes the
  JSON envelope, runs the handler and only then acknowledges (``msg.ack()`` for nats-py).
  Measured from the first send to the last acknowledgement.
- signals: core NATS publish of JSON envelopes to a subject, decoded by a subscriber in
  the other process (at most once).
- calls: one request at a time, the answer published to the caller's own inbox subject;
  p50 and p99 of the round trip.

    .venv/bin/python bench/bench_nats.py                 # defaults, about a minute
    .venv/bin/python bench/bench_nats.py --messages 20000 --signals 50000 --calls 2000
    .venv/bin/python bench/bench_nats.py --url nats://127.0.0.1:4223 --json

Streams live under a random prefix and are deleted afterwards. See bench/README.md.
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
PREFETCH = 64  # consumer concurrency (microhive) = fetch batch (raw)
IN_FLIGHT = 128  # unanswered publishes per producer

QUEUE_TARGET = 15_000.0  # messages/s, first send -> last ack
SIGNALS_TARGET = 100_000.0  # signals/s, first send -> last received
P50_TARGET = 1_000.0  # µs
P99_TARGET = 3_000.0  # µs
RATIO_TARGET = 0.8


def _envelope(kind: str, name: str, payload: Any, **extra: Any) -> bytes:
    """What raw nats-py puts on the wire: the same envelope microhive writes."""
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


async def _client(url: str) -> Any:
    import nats

    return await nats.connect(url.split("?", 1)[0])


def _with_prefix(url: str, prefix: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}prefix={prefix}"


def _raw_names(prefix: str) -> tuple[str, str]:
    """The raw side's stream and subject: beside microhive's, under the same prefix."""
    return f"{prefix}_raw_work", f"{prefix}.raw.work"


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
        await broker.length(WORK)  # returns once the server confirmed the last acks
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
    from nats.errors import TimeoutError as FetchTimeout
    from nats.js.api import StreamConfig

    client = await _client(url)
    js = client.jetstream()
    stream, subject = _raw_names(prefix)
    await js.add_stream(StreamConfig(name=stream, subjects=[subject]))
    pull = await js.pull_subscribe(subject, "bench", stream=stream)
    count = 0

    async def work(n: int) -> None:
        nonlocal count
        count += 1

    ready.set()
    while count < n:
        try:
            messages = await pull.fetch(PREFETCH, timeout=1)
        except FetchTimeout:
            continue
        for message in messages:
            await work(**orjson.loads(message.data)["payload"])
            await message.ack()
    await client.flush()
    end = time.time()
    await client.close()
    return {"end": end, "count": count}


async def queue_producer_raw(url: str, prefix: str, n: int) -> dict[str, Any]:
    client = await _client(url)
    js = client.jetstream()
    _, subject = _raw_names(prefix)

    async def sender(first: int) -> None:
        for i in range(first, n, IN_FLIGHT):
            await js.publish(subject, _envelope("message", WORK.name, {"n": i}))

    start = time.time()
    await asyncio.gather(*(sender(k) for k in range(IN_FLIGHT)))
    sent = time.time()
    await client.close()
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
    client = await _client(url)
    count, last = 0, 0.0

    async def tick(n: int) -> None:
        nonlocal count, last
        count += 1
        last = time.time()

    async def listen(message: Any) -> None:
        await tick(**orjson.loads(message.data)["payload"])

    await client.subscribe(f"{prefix}.raw.{TICK.name}", cb=listen, pending_bytes_limit=0)
    await client.flush()
    ready.set()
    await _until_quiet(lambda: count, n)
    await client.close()
    return {"end": last, "count": count}


async def signal_sender_raw(url: str, prefix: str, n: int) -> dict[str, Any]:
    client = await _client(url)
    subject = f"{prefix}.raw.{TICK.name}"
    start = time.time()
    for i in range(n):
        await client.publish(subject, _envelope("signal", TICK.name, {"n": i}))
    await client.flush()
    sent = time.time()
    await client.close()
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
    client = await _client(url)

    async def ask(n: int) -> int:
        return n + 1

    async def serve(message: Any) -> None:
        request = orjson.loads(message.data)
        value = await ask(**request["payload"])
        reply = _envelope(
            "reply",
            request["name"],
            {"ok": True, "value": value},
            correlation_id=request["correlation_id"],
        )
        await client.publish(request["reply_to"], reply)

    await client.subscribe(f"{prefix}.raw.{ASK.name}", cb=serve)
    await client.flush()
    ready.set()
    await _wait_for_stop(url, prefix)
    await client.close()
    return {}


async def caller_raw(url: str, prefix: str, n: int) -> dict[str, Any]:
    client = await _client(url)
    inbox = f"{prefix}.raw.reply.{secrets.token_hex(16)}"
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    async def answered(message: Any) -> None:
        answers.put_nowait(message.data)

    await client.subscribe(inbox, cb=answered)
    await client.flush()
    subject = f"{prefix}.raw.{ASK.name}"

    async def call(n: int) -> Any:
        request_id = secrets.token_hex(16)
        request = _envelope("call", ASK.name, {"n": n}, correlation_id=request_id, reply_to=inbox)
        await client.publish(subject, request)
        while True:
            reply = orjson.loads(await asyncio.wait_for(answers.get(), 5))
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
    await client.close()
    await _stop(url, prefix)
    return {"times": times}


async def _stop(url: str, prefix: str) -> None:
    client = await _client(url)
    await client.publish(f"{prefix}.stop", b"")
    await client.flush()
    await client.close()


async def _wait_for_stop(url: str, prefix: str) -> None:
    client = await _client(url)
    stopped = asyncio.Event()

    async def stop(message: Any) -> None:
        stopped.set()

    await client.subscribe(f"{prefix}.stop", cb=stop)
    await client.flush()
    await stopped.wait()
    await client.close()


# -- orchestration -------------------------------------------------------------------------

Side = Callable[..., Any]


def _side(function: Side, results: Any, role: str, *args: Any) -> None:
    _run(function(*args), results, role)


def pair(url: str, n: int, waiting: Side, active: Side) -> dict[str, dict[str, Any]]:
    """Run ``waiting`` (consumer side) and, once it is ready, ``active`` in two processes."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    ready = context.Event()
    prefix = f"mhbench_{secrets.token_hex(4)}"
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
    client = await _client(url)
    try:
        reply = await client.request("$JS.API.STREAM.NAMES", b"{}", timeout=5)
        for name in orjson.loads(reply.data).get("streams") or []:
            if name.startswith(f"{prefix}_"):
                await client.request(f"$JS.API.STREAM.DELETE.{name}", b"", timeout=5)
    finally:
        await client.close()


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
        "JetStream queue send -> ack",
        "msg/s",
        best["queue.mh"],
        best["queue.raw"],
        QUEUE_TARGET,
        True,
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
    rows = [("metric", "microhive", "raw nats-py", "ratio", "target", "result")]
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
    parser.add_argument("--url", default="nats://127.0.0.1:4222", help="NATS (JetStream) to use")
    parser.add_argument("--messages", type=int, default=50_000, help="queue messages per run")
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
            f"microhive nats:// benchmark - Python {platform.python_version()}, "
            f"{os.cpu_count()} CPU(s), messages={args.messages:,}, signals={args.signals:,}, "
            f"calls={args.calls:,}, best of {args.rounds}, separate processes"
        )
        print()
        print(table(results))
        print()
        print(
            "ratio = how much of raw nats-py's performance microhive reaches "
            "(throughput: microhive/raw, latency: raw/microhive; > 1 is faster than raw)."
        )
        print(f"{len(results) - len(missed)} of {len(results)} figures met, {elapsed:.1f} s")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
