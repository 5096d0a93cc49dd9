#!/usr/bin/env python
"""Throughput of the ``amqp://`` transport against raw aio-pika, same guarantees, same run.

Both sides publish persistent messages to a durable queue with publisher confirms (and
``mandatory``), ``--inflight`` sends awaited concurrently, and consume them with manual acks
and ``basic.qos`` prefetch ``--prefetch``:

- raw aio-pika: ``channel.default_exchange.publish(Message(..., delivery_mode=PERSISTENT))``
  on a confirm channel; ``queue.consume(callback)`` with ``await message.ack()``;
- microhive: ``broker.jobs.send(...)``; a ``MicroAgent`` with
  ``@consumer(queue, concurrency=prefetch)`` whose handler returns at once (ack after it).

The raw body is the very envelope microhive sends, so both move the same bytes. Rounds
alternate which side goes first; the best of ``--repeat`` rounds is kept and the ratio
microhive / raw printed (higher is better).

    .venv/bin/python bench/bench_amqp.py                 # 20,000 messages x 3 rounds
    .venv/bin/python bench/bench_amqp.py --n 5000 --repeat 1
    .venv/bin/python bench/bench_amqp.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from a checkout: import the package beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aio_pika

from microhive import MicroAgent, Queue, QueueBroker, consumer
from microhive.codecs import JsonCodec
from microhive.envelope import Envelope, Kind, new_id

TARGET = 6_000.0  # messages/s, each way
PAYLOAD = {"n": 0, "user": "ann", "text": "hello"}


async def _each(total: int, inflight: int, send: Callable[[int], Awaitable[Any]]) -> float:
    """Seconds to run ``send(i)`` for every i with ``inflight`` of them awaited at once."""

    async def lane(first: int) -> None:
        for i in range(first, total, inflight):
            await send(i)

    started = time.perf_counter()
    await asyncio.gather(*(lane(k) for k in range(min(inflight, total))))
    return time.perf_counter() - started


async def raw_round(url: str, queue: str, total: int, inflight: int, prefetch: int) -> tuple:
    body = JsonCodec().encode(Envelope(Kind.MESSAGE, queue, PAYLOAD, "bench"))
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        declared = await channel.declare_queue(queue, durable=True)
        exchange = channel.default_exchange

        async def send(i: int) -> None:
            message = aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=new_id(),
            )
            await exchange.publish(message, routing_key=queue, mandatory=True)

        publish = await _each(total, inflight, send)

        consumer_channel = await connection.channel()
        await consumer_channel.set_qos(prefetch_count=prefetch)
        source = await consumer_channel.declare_queue(queue, durable=True)
        done = asyncio.Event()
        count = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal count
            json.loads(message.body)  # read it, as a handler would
            await message.ack()
            count += 1
            if count >= total:
                done.set()

        started = time.perf_counter()
        tag = await source.consume(on_message)
        await done.wait()
        consume = time.perf_counter() - started
        await source.cancel(tag)
        await declared.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
    return total / publish, total / consume


async def microhive_round(url: str, queue: str, total: int, inflight: int, prefetch: int) -> tuple:
    work = Queue(queue)
    done = asyncio.Event()
    count = 0

    class Sink(MicroAgent):
        @consumer(work, concurrency=prefetch)
        async def handle(self, **payload: Any) -> None:
            nonlocal count
            count += 1
            if count >= total:
                done.set()

    prefix = f"{queue}."  # a world of its own, removed afterwards (dead-letter exchange too)
    broker = QueueBroker.from_url(
        f"{url}{'&' if '?' in url else '?'}prefix={prefix}", queues=[work]
    )
    await broker.connect()
    try:
        handle = broker.queue(work)
        publish = await _each(total, inflight, lambda i: handle.send(PAYLOAD, sender="bench"))
        agent = Sink(broker=broker)
        started = time.perf_counter()
        await agent.start()
        await done.wait()
        consume = time.perf_counter() - started
        await agent.stop()
        channel = await broker.link.rpc()  # type: ignore[attr-defined]
        for name in (queue, f"{queue}:dead"):
            await channel.queue_delete(prefix + name)
        await channel.exchange_delete(prefix + "microhive:dead-letter")
    finally:
        await broker.close()
    return total / publish, total / consume


async def main(args: argparse.Namespace) -> dict[str, Any]:
    raw: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    for round_ in range(args.repeat):
        name = f"bench-amqp-{new_id()[:8]}"
        sides: list[tuple[list[tuple[float, float]], Any]] = [
            (raw, raw_round(args.url, name + "-raw", args.n, args.inflight, args.prefetch)),
            (ours, microhive_round(args.url, name, args.n, args.inflight, args.prefetch)),
        ]
        if round_ % 2:
            sides.reverse()
        for results, run in sides:
            results.append(await run)
    best_raw = (max(r[0] for r in raw), max(r[1] for r in raw))
    best_ours = (max(r[0] for r in ours), max(r[1] for r in ours))
    return {
        "n": args.n,
        "inflight": args.inflight,
        "prefetch": args.prefetch,
        "repeat": args.repeat,
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
        "publish": {"raw": best_raw[0], "microhive": best_ours[0]},
        "consume": {"raw": best_raw[1], "microhive": best_ours[1]},
        "rounds": {"raw": raw, "microhive": ours},
    }


def report(result: dict[str, Any]) -> None:
    print(
        f"AMQP: {result['n']:,} persistent messages, confirms, {result['inflight']} sends in "
        f"flight, manual ack, prefetch {result['prefetch']}; best of {result['repeat']} "
        f"({result['machine']})"
    )
    print(f"{'':26}{'raw aio-pika':>14}{'microhive':>12}{'ratio':>8}{'target':>10}")
    for what, label in (("publish", "publish (confirmed) /s"), ("consume", "consume (acked) /s")):
        raw, ours = result[what]["raw"], result[what]["microhive"]
        ok = "ok" if ours >= TARGET and ours >= raw else "MISSED"
        print(
            f"{label:26}{raw:>14,.0f}{ours:>12,.0f}{ours / raw:>7.2f}x"
            f"{'>=' + format(TARGET, ',.0f'):>10} {ok}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get(
        "MICROHIVE_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))  # fmt: skip
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--inflight", type=int, default=1000)
    parser.add_argument("--prefetch", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    outcome = asyncio.run(main(arguments))
    if arguments.json:
        print(json.dumps(outcome, indent=2))
    else:
        report(outcome)
