#!/usr/bin/env python
"""Consuming a backlog: one message per handler call, batch handlers, and the raw client.

For each engine a queue is filled with N messages (119-byte JSON envelopes, not timed), then
drained three ways in a fresh process each, timed from the first message a handler got to
the last acknowledgement (the queue's length is 0), so that connecting and joining a consumer
group (about a second on Kafka) do not count:

- microhive, one message per handler call (`@consumer(q, concurrency=64)`);
- microhive, batch handlers (`@consumer(q, batch=500, concurrency=2)`);
- the raw client with the same guarantee (ack after handling, decoding each JSON body):
  redis-py XREADGROUP COUNT 500 + XACK, aiokafka getmany + commit, nats-py pull fetch(500) +
  ack each (the JetStream API has no batch ack), aiormq basic_consume prefetch 500 + multiple
  ack. Memory has no client of its own.

    .venv/bin/python bench/bench_batches.py                       # every engine, 100k each
    .venv/bin/python bench/bench_batches.py --engines redis,kafka --messages 50000

Ratios: batch / per-message (what batch handlers buy) and batch / raw (the framework's
cost). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):  # run as a script from a checkout: import the package beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from microhive import MicroAgent, Queue, QueueBroker, consumer

WORK = Queue("bench_batch")
BATCH = 500
URLS = {
    "memory": "memory://bench",
    "redis": "redis://127.0.0.1:6379/0?prefix={ns}:",
    "nats": "nats://127.0.0.1:4222?prefix={ns}",
    "kafka": "kafka://127.0.0.1:9092?prefix={ns}&session_timeout=2&heartbeat_interval=0.2"
    "&rebalance_timeout=2",
    "amqp": "amqp://guest:guest@127.0.0.1:5672/?prefix={ns}.",
}


class PerMessage(MicroAgent):
    @consumer(WORK, concurrency=64, retries=0)
    async def work(self, n: int) -> None:
        if not self.settings["count"]:
            self.settings["first"] = time.perf_counter()
        self.settings["count"] += 1


class Batched(MicroAgent):
    @consumer(WORK, batch=BATCH, batch_timeout=0.01, concurrency=2, retries=0)
    async def work(self, items: list[dict[str, Any]]) -> None:
        if not self.settings["count"]:
            self.settings["first"] = time.perf_counter()
        self.settings["count"] += len(items)


async def fill(url: str, n: int) -> None:
    async with QueueBroker.from_url(url, queues=[WORK]) as broker:
        step = 256
        for first in range(0, n, step):
            await asyncio.gather(
                *(
                    broker.send(WORK, {"n": i}, sender="bench")
                    for i in range(first, min(n, first + step))
                )
            )


async def drain_microhive(url: str, n: int, agent_class: type[MicroAgent]) -> float:
    broker = QueueBroker.from_url(url, queues=[WORK])
    agent = agent_class(broker=broker, settings={"count": 0, "first": 0.0})
    async with broker, agent:
        while agent.settings["count"] < n:  # noqa: ASYNC110 - polling the handler's count
            await asyncio.sleep(0.001)
        while await broker.length(WORK):  # noqa: ASYNC110 - the last acks are on their way
            await asyncio.sleep(0.001)
        took = time.perf_counter() - agent.settings["first"]
    return n / took


async def drain_raw_redis(url: str, n: int) -> float:
    import redis.asyncio as aioredis

    prefix = url.split("prefix=")[1].split("&", maxsplit=1)[0]
    client = aioredis.Redis.from_url(url.split("?", 1)[0])
    stream = f"{prefix}queue:{WORK.name}"
    await client.xgroup_create(stream, "raw", id="0", mkstream=True)
    count = 0
    started = 0.0
    while count < n:
        reply = await client.xreadgroup("raw", "raw", {stream: ">"}, count=BATCH, block=1000)
        if not reply:
            continue
        started = started or time.perf_counter()
        ids = []
        for entry_id, fields in reply[0][1]:
            orjson.loads(fields[b"data"])
            count += 1
            ids.append(entry_id)
        await client.xack(stream, "raw", *ids)
    took = time.perf_counter() - started
    await client.aclose()
    return n / took


async def drain_raw_kafka(url: str, n: int) -> float:
    from aiokafka import AIOKafkaConsumer

    prefix = url.split("prefix=")[1].split("&", maxsplit=1)[0]
    consumer_ = AIOKafkaConsumer(
        f"{prefix}.queue.{WORK.name}",
        bootstrap_servers="127.0.0.1:9092",
        group_id=f"raw-{secrets.token_hex(4)}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=2000,
        heartbeat_interval_ms=200,
    )
    await consumer_.start()
    count = 0
    started = 0.0
    try:
        while count < n:
            batches = await consumer_.getmany(timeout_ms=1000, max_records=BATCH)
            if batches:
                started = started or time.perf_counter()
            for records in batches.values():
                for record in records:
                    orjson.loads(record.value or b"null")
                    count += 1
            if batches:
                await consumer_.commit()
        return n / (time.perf_counter() - started)
    finally:
        await consumer_.stop()


async def drain_raw_nats(url: str, n: int) -> float:
    import nats

    prefix = url.split("prefix=")[1].split("&", maxsplit=1)[0]
    client = await nats.connect("nats://127.0.0.1:4222")
    js = client.jetstream()
    stream = f"{prefix}_queue_{WORK.name}"
    info = await js.stream_info(stream)
    subscription = await js.pull_subscribe(
        info.config.subjects[0], durable=f"raw{secrets.token_hex(3)}", stream=stream
    )
    count = 0
    started = 0.0
    while count < n:
        try:
            messages = await subscription.fetch(BATCH, timeout=1)
        except TimeoutError:
            continue
        started = started or time.perf_counter()
        for message in messages:
            orjson.loads(message.data)
            await message.ack()
            count += 1
    took = time.perf_counter() - started
    await client.close()
    return n / took


RAW: dict[str, Callable[[str, int], Awaitable[float]]] = {
    "redis": drain_raw_redis,
    "kafka": drain_raw_kafka,
    "nats": drain_raw_nats,
}


def _measure(engine: str, how: str, url: str, n: int, results: Any) -> None:
    async def run() -> float:
        if engine == "memory":  # one hive lives in one process: fill it there
            await fill(url, n)
        if how == "raw":
            return await RAW[engine](url, n)
        return await drain_microhive(url, n, PerMessage if how == "per-message" else Batched)

    try:
        results.put(asyncio.run(run()))
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def measure(engine: str, how: str, n: int) -> float | str:
    url = URLS[engine].format(ns=f"mhb{secrets.token_hex(4)}")
    if engine != "memory":
        asyncio.run(fill(url, n))
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_measure, args=(engine, how, url, n, results))
    process.start()
    outcome: float | str = results.get(timeout=900)
    process.join(30)
    return outcome


def ratio(a: float | str | None, b: float | str | None) -> str:
    return f"{a / b:.2f}" if isinstance(a, float) and isinstance(b, float) else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--engines", default="memory,redis,nats,kafka,amqp")
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    heads = ("per-message", "batch", "raw", "batch/per", "batch/raw")
    print(f"{'engine':8} " + " ".join(f"{h:>12}" for h in heads))
    for engine in args.engines.split(","):
        figures = {
            how: measure(engine, how, args.messages)
            for how in ("per-message", "batch", "raw")
            if how != "raw" or engine in RAW
        }

        def show(value: float | str | None) -> str:
            if value is None:
                return "n/a"
            return f"{value:,.0f}" if isinstance(value, float) else "error"

        per, batch, raw = (figures.get(k) for k in ("per-message", "batch", "raw"))
        print(
            f"{engine:8} {show(per):>12} {show(batch):>12} {show(raw):>12} "
            f"{ratio(batch, per):>12} {ratio(batch, raw):>12}",
            flush=True,
        )
        for how, value in figures.items():
            if isinstance(value, str):
                print(f"  {engine} {how}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
