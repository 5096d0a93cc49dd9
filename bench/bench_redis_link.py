#!/usr/bin/env python
"""microhive's own Redis link against redis-py doing the same work, same process, same run.

The question: does ``microhive/transports/redis/link.py`` (redis-py's handshake, then RESP2
spoken on the socket with hiredis, pipelining whatever one event-loop iteration sends) still
beat redis-py itself? Each client does the queue path of one process, on its own stream:

- send: N ``XADD`` with 128 commands in flight. The link: 128 tasks each awaiting its own
  ``send()`` (how the broker sends: concurrent callers coalesce). redis-py: its best case,
  ``pipeline(transaction=False)`` of 128 XADDs at a time, one pipeline or 4 of 32 in
  flight at once; and 128 concurrent tasks each awaiting ``xadd()`` on the client's pool
  (what independent concurrent callers get from redis-py).
- consume: ``XREADGROUP COUNT 64`` then ``XACK`` of what was read, until all N are read.
  The link sends the XACK without waiting, in the same write as the next read; redis-py
  puts the XACK and the next XREADGROUP in one pipeline: one round trip per batch each.

redis-py runs twice: with RESP2 (the hiredis parser) and with RESP3 (``protocol=3``).

    .venv/bin/python bench/bench_redis_link.py              # 50,000 messages, best of 3
    .venv/bin/python bench/bench_redis_link.py --messages 20000 --repeat 5 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from a checkout: import the package beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from microhive.transports.redis.link import Link
from microhive.transports.redis.options import parse

IN_FLIGHT = 128
COUNT = 64
GROUP = "bench"
DATA = b'{"v":1,"id":"9f6c0c6bb2d84f5e9d0a1f3b7c2e4a10","kind":"message","name":"work",' + (
    b'"sender":"bench","payload":{"n":12345},"headers":{},"attempt":1}'
)


async def link_send(link: Link, stream: str, n: int) -> None:
    async def sender(first: int) -> None:
        for _ in range(first, n, IN_FLIGHT):
            await link.send(b"XADD", stream, b"*", b"data", DATA)

    await asyncio.gather(*(sender(k) for k in range(IN_FLIGHT)))


async def link_consume(link: Link, stream: str, n: int) -> None:
    read = 0
    while read < n:
        reply = await link.send(
            b"XREADGROUP", b"GROUP", GROUP, b"c", b"COUNT", COUNT, b"STREAMS", stream, b">"
        )
        entries = reply[0][1]
        read += len(entries)
        link.send_nowait(b"XACK", stream, GROUP, *(entry[0] for entry in entries))
    await link.send(b"PING")  # the last XACK landed


async def pipeline_send(client: Any, stream: str, n: int) -> None:
    for first in range(0, n, IN_FLIGHT):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(IN_FLIGHT, n - first)):
            pipe.xadd(stream, {b"data": DATA})
        await pipe.execute()


async def pipelines_send(client: Any, stream: str, n: int, lanes: int = 4) -> None:
    """``lanes`` pipelines in flight at once (on as many pooled connections), 128 XADDs in
    all: no batch waits for the previous one's replies."""

    async def lane(first: int) -> None:
        size = IN_FLIGHT // lanes
        for start in range(first, n, IN_FLIGHT):
            pipe = client.pipeline(transaction=False)
            for _ in range(min(size, n - start)):
                pipe.xadd(stream, {b"data": DATA})
            await pipe.execute()

    await asyncio.gather(*(lane(k * (IN_FLIGHT // lanes)) for k in range(lanes)))


async def pool_send(client: Any, stream: str, n: int) -> None:
    async def sender(first: int) -> None:
        for _ in range(first, n, IN_FLIGHT):
            await client.xadd(stream, {b"data": DATA})

    await asyncio.gather(*(sender(k) for k in range(IN_FLIGHT)))


async def pipeline_consume(client: Any, stream: str, n: int) -> None:
    read = 0
    acks: list[bytes] = []
    while read < n:
        pipe = client.pipeline(transaction=False)
        if acks:
            pipe.xack(stream, GROUP, *acks)
        pipe.xreadgroup(GROUP, "c", {stream: ">"}, count=COUNT)
        reply = (await pipe.execute())[-1]
        entries = reply[0][1] if isinstance(reply, list) else reply[stream.encode()][0]
        acks = [entry[0] for entry in entries]
        read += len(acks)
    if acks:
        await client.xack(stream, GROUP, *acks)


async def measure(
    name: str,
    n: int,
    send: Callable[[str, int], Awaitable[None]],
    consume: Callable[[str, int], Awaitable[None]],
    admin: Any,
    prefix: str,
) -> dict[str, Any]:
    stream = f"{prefix}{name}"
    await admin.xgroup_create(stream, GROUP, id="0", mkstream=True)
    start = time.perf_counter()
    await send(stream, n)
    sent = time.perf_counter()
    await consume(stream, n)
    done = time.perf_counter()
    await admin.delete(stream)
    return {
        "client": name,
        "send_per_s": n / (sent - start),
        "consume_per_s": n / (done - sent),
        "send_ack_per_s": n / (done - start),
    }


async def run(url: str, n: int, repeat: int) -> list[dict[str, Any]]:
    import redis.asyncio as aioredis

    bare = url.split("?", 1)[0]
    admin = aioredis.Redis.from_url(bare)
    resp2 = aioredis.Redis.from_url(bare, protocol=2, max_connections=IN_FLIGHT)
    resp3 = aioredis.Redis.from_url(bare, protocol=3, max_connections=IN_FLIGHT)
    link = Link(parse(url), "bench")
    await link.ensure()
    prefix = f"microhive-bench.{secrets.token_hex(4)}:"
    variants: dict[str, tuple[Any, Any]] = {
        "microhive link": (
            lambda s, k: link_send(link, s, k),
            lambda s, k: link_consume(link, s, k),
        ),
        "redis-py RESP2 pipeline": (
            lambda s, k: pipeline_send(resp2, s, k),
            lambda s, k: pipeline_consume(resp2, s, k),
        ),
        "redis-py RESP3 pipeline": (
            lambda s, k: pipeline_send(resp3, s, k),
            lambda s, k: pipeline_consume(resp3, s, k),
        ),
        "redis-py RESP2 4 pipelines": (
            lambda s, k: pipelines_send(resp2, s, k),
            lambda s, k: pipeline_consume(resp2, s, k),
        ),
        "redis-py RESP3 4 pipelines": (
            lambda s, k: pipelines_send(resp3, s, k),
            lambda s, k: pipeline_consume(resp3, s, k),
        ),
        "redis-py RESP2 pool": (
            lambda s, k: pool_send(resp2, s, k),
            lambda s, k: pipeline_consume(resp2, s, k),
        ),
    }
    best: dict[str, dict[str, Any]] = {}
    try:
        for _ in range(repeat):  # interleaved, so noise hits every client alike
            for name, (send, consume) in variants.items():
                result = await measure(name, n, send, consume, admin, prefix)
                kept = best.setdefault(name, result)
                for key in ("send_per_s", "consume_per_s", "send_ack_per_s"):
                    kept[key] = max(kept[key], result[key])
    finally:
        await link.close()
        for client in (resp2, resp3, admin):
            await client.aclose()
    return list(best.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best of each is kept")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(run(args.url, args.messages, args.repeat))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    base = results[0]
    print(f"{'client':<26}{'send/s':>10}{'consume/s':>11}{'send→ack/s':>12}{'link x':>8}")
    for row in results:
        ratio = base["send_ack_per_s"] / row["send_ack_per_s"]
        print(
            f"{row['client']:<26}{row['send_per_s']:>10,.0f}{row['consume_per_s']:>11,.0f}"
            f"{row['send_ack_per_s']:>12,.0f}{ratio:>8.2f}"
        )


if __name__ == "__main__":
    main()
