#!/usr/bin/env python
"""Throughput of the ``kafka://`` transport against raw aiokafka, same run.

Each phase runs in a fresh process, once through microhive and once with plain aiokafka
doing the same work with the same guarantee, on topics of 3 partitions:

- produce: ``IN_FLIGHT`` tasks each sending one message at a time and waiting for the
  broker's acknowledgement (``acks=all``): ``broker.send()`` for microhive,
  ``await (await producer.send(...))`` for aiokafka, which batches what is in flight.
  Measured from the first send to the last acknowledgement.
- consume: a consumer group reads the backlog the produce phase left, decodes each JSON
  envelope, runs the handler, and commits only what was processed — a microhive agent
  (``@consumer``, concurrency ``PREFETCH``) against ``getmany(max_records=PREFETCH)`` +
  ``commit()`` after each batch (the same bound on what is in hand). A second raw figure,
  ``getmany()`` of whatever was fetched with a bare function call per message, is printed
  as a reference: it shows the cost of the agent runtime's dispatch, not of the transport.
  Measured from the first message handled to the last offset committed (the group join
  before it is left out: Tansu takes about a second to form a group).

    .venv/bin/python bench/bench_kafka.py                 # defaults, under a minute
    .venv/bin/python bench/bench_kafka.py --messages 50000 --repeat 3
    .venv/bin/python bench/bench_kafka.py --url kafka://127.0.0.1:9093 --json

Topics live under a random prefix and are deleted afterwards. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import platform
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):  # run as a script from a checkout: import the package beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from microhive import MicroAgent, Queue, QueueBroker, consumer

WORK = Queue("bench.work")
PARTITIONS = 3
IN_FLIGHT = 1000  # unacknowledged sends, on both sides
PREFETCH = 256  # consumer concurrency (microhive) = most records per getmany (raw)
BATCH_SIZE = 65536  # producer batch bytes per partition: microhive's default, given to raw too
GROUP_OPTIONS = {"session_timeout": 2, "heartbeat_interval": 0.2, "rebalance_timeout": 2}

PRODUCE_TARGET = 40_000.0  # messages/s
CONSUME_TARGET = 60_000.0  # messages/s
RATIO_TARGET = 0.8


def _envelope(payload: Any) -> bytes:
    """What raw aiokafka writes: the same envelope microhive writes."""
    return orjson.dumps(
        {
            "v": 1,
            "id": secrets.token_hex(16),
            "kind": "message",
            "name": WORK.name,
            "sender": "bench",
            "payload": payload,
            "headers": {},
            "correlation_id": None,
            "reply_to": None,
            "sent_at": time.time(),
            "attempt": 1,
        }
    )


def _url(url: str, prefix: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in GROUP_OPTIONS.items())
    return f"{url}{'&' if '?' in url else '?'}prefix={prefix}&{query}"


def _servers(url: str) -> str:
    return url.split("://", 1)[1].split("?", 1)[0].rstrip("/")


def _raw_topic(prefix: str) -> str:
    return f"{prefix}.raw.work"


def _group_settings() -> dict[str, Any]:
    return {
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 2000,
        "heartbeat_interval_ms": 200,
        "rebalance_timeout_ms": 2000,
    }


# -- produce -------------------------------------------------------------------------------


async def produce_mh(url: str, prefix: str, n: int) -> dict[str, Any]:
    async with QueueBroker.from_url(_url(url, prefix), queues=[WORK]) as broker:
        await broker.length(WORK)  # creates the topics, outside the measurement

        async def sender(first: int) -> None:
            for i in range(first, n, IN_FLIGHT):
                await broker.send(WORK, {"n": i}, sender="bench")

        start = time.perf_counter()
        await asyncio.gather(*(sender(k) for k in range(IN_FLIGHT)))
        elapsed = time.perf_counter() - start
    return {"rate": n / elapsed}


async def produce_raw(url: str, prefix: str, n: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=_servers(url))
    await admin.start()
    await admin.create_topics([NewTopic(_raw_topic(prefix), PARTITIONS, 1)])
    await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=_servers(url), acks="all", max_batch_size=BATCH_SIZE
    )
    await producer.start()
    topic = _raw_topic(prefix)
    await producer.partitions_for(topic)

    async def sender(first: int) -> None:
        for i in range(first, n, IN_FLIGHT):
            sent = await producer.send(topic, _envelope({"n": i}))
            await sent

    start = time.perf_counter()
    await asyncio.gather(*(sender(k) for k in range(IN_FLIGHT)))
    elapsed = time.perf_counter() - start
    await producer.stop()
    return {"rate": n / elapsed}


# -- consume -------------------------------------------------------------------------------


class WorkSink(MicroAgent):
    count = 0
    expected = 0
    first = 0.0

    @consumer(WORK, concurrency=PREFETCH)
    async def work(self, n: int) -> None:
        if not self.count:
            self.first = time.perf_counter()
        self.count += 1
        if self.count == self.expected:
            self.settings["done"].set()


async def consume_mh(url: str, prefix: str, n: int) -> dict[str, Any]:
    broker = QueueBroker.from_url(_url(url, prefix), queues=[WORK])
    done = asyncio.Event()
    sink = WorkSink(broker=broker, settings={"done": done})
    sink.expected = n
    async with broker, sink:
        await done.wait()
        await broker.length(WORK)  # returns once the last offsets are committed
        end = time.perf_counter()
    return {"rate": n / (end - sink.first), "count": sink.count}


async def consume_raw(url: str, prefix: str, n: int) -> dict[str, Any]:
    """The same bound as microhive's prefetch: at most PREFETCH records in hand."""
    return await _consume_raw(url, prefix, n, PREFETCH, "bounded")


async def consume_raw_unbounded(url: str, prefix: str, n: int) -> dict[str, Any]:
    """Whatever aiokafka has fetched at once, and no dispatch at all: an upper bound."""
    return await _consume_raw(url, prefix, n, None, "unbounded")


async def _consume_raw(
    url: str, prefix: str, n: int, most: int | None, group: str
) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer

    client = AIOKafkaConsumer(
        _raw_topic(prefix),
        bootstrap_servers=_servers(url),
        group_id=f"{prefix}.raw.{group}",
        **_group_settings(),
    )
    await client.start()
    count = 0
    first = 0.0

    async def work(n: int) -> None:
        nonlocal count
        count += 1

    while count < n:
        batch = await client.getmany(timeout_ms=1000, max_records=most)
        if batch and not first:
            first = time.perf_counter()
        offsets = {}
        for tp, records in batch.items():
            for record in records:
                await work(**orjson.loads(record.value)["payload"])
            offsets[tp] = records[-1].offset + 1
        if offsets:
            await client.commit(offsets)
    end = time.perf_counter()
    await client.stop()
    return {"rate": n / (end - first), "count": count}


# -- running -------------------------------------------------------------------------------


def _phase(name: str, url: str, prefix: str, n: int) -> dict[str, Any]:
    return asyncio.run(PHASES[name](url, prefix, n))


PHASES: dict[str, Any] = {
    "produce_mh": produce_mh,
    "produce_raw": produce_raw,
    "consume_mh": consume_mh,
    "consume_raw": consume_raw,
    "consume_raw_unbounded": consume_raw_unbounded,
}


async def _delete(url: str, prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=_servers(url))
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(f"{prefix}.")]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


def round_(url: str, n: int, pool: Any) -> dict[str, float]:
    prefix = f"bench_{secrets.token_hex(4)}"
    figures = {}
    try:
        for name in PHASES:
            outcome = pool.apply(_phase, (name, url, prefix, n))
            if outcome.get("count", n) != n:
                raise RuntimeError(f"{name}: handled {outcome['count']} of {n}")
            figures[name] = outcome["rate"]
    finally:
        asyncio.run(_delete(url, prefix))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="kafka://127.0.0.1:9092")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=2, help="rounds; the best is kept")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    best: dict[str, float] = {}
    with context.Pool(1, maxtasksperchild=1) as pool:
        for _ in range(args.repeat):
            for name, rate in round_(args.url, args.messages, pool).items():
                best[name] = max(best.get(name, 0.0), rate)
    rows = [
        ("produce (send → acks=all)", best["produce_mh"], best["produce_raw"], PRODUCE_TARGET),
        ("consume (group, handler, commit)", best["consume_mh"], best["consume_raw"],
         CONSUME_TARGET),
        ("  vs raw unbounded, no dispatch", best["consume_mh"], best["consume_raw_unbounded"],
         0.0),
    ]  # fmt: skip
    if args.json:
        print(json.dumps({"messages": args.messages, **best}, indent=2))
        return
    print(
        f"Kafka at {args.url}: {args.messages:,} messages of ~{len(_envelope({'n': 0}))} bytes, "
        f"{PARTITIONS} partitions, best of {args.repeat} (Python {platform.python_version()})"
    )
    print(f"{'metric':34} {'microhive':>14} {'raw aiokafka':>14} {'ratio':>6}  target")
    for label, ours, raw, target in rows:
        ratio = ours / raw
        ok = ours >= target and ratio >= RATIO_TARGET
        verdict = f">= {target:,.0f}/s, >= {RATIO_TARGET}x {'ok' if ok else 'MISSED'}"
        print(
            f"{label:34} {ours:>10,.0f}/s {raw:>10,.0f}/s {ratio:>6.2f}  "
            f"{verdict if target else '(reference)'}"
        )


if __name__ == "__main__":
    main()
