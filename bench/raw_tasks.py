"""Tasks with results done by hand with the raw clients: the baseline of bench/bench_tasks.py.

The same work as a microhive task, written the way a careful user would with redis-py and
aio-pika and nothing else:

- **submit**: the job's record (``{"state": "pending"}``, with a TTL) written with ``SET NX``,
  then the message: ``XADD`` to a stream (Redis) or a persistent publish, confirmed, to a
  durable queue (RabbitMQ);
- **worker** (``XREADGROUP`` of up to 64 entries, run together, one ``XACK``; or
  ``basic.consume`` with prefetch 64): read the record (a revoked job must not run), run
  ``x + y``, write the final record and ``PUBLISH`` it to the submitter's channel in one
  pipeline, then ``XACK`` / ack;
- **result**: the submitter's one subscription hands each published record to the future
  its job waits on.

Results live in Redis on both engines, as with microhive's ``results=redis://``. Nothing
here is microhive's: ``raw_tasks.py`` imports redis-py, aio-pika and the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import redis.asyncio as aioredis

REDIS = "redis://127.0.0.1:6379/0"
AMQP = "amqp://guest:guest@127.0.0.1:5672/"
CONCURRENCY = 64
TTL = 86_400


class RawTasks:
    """One process's side: a submitter (``submit`` / ``result``) and, when asked, workers."""

    def __init__(self, engine: str, token: str) -> None:
        self.engine = engine
        self.prefix = f"bench-raw-{token}:"
        self.queue = f"bench-raw-{token}"
        pool = aioredis.BlockingConnectionPool.from_url(REDIS, max_connections=2 * CONCURRENCY)
        self.redis = aioredis.Redis(connection_pool=pool)
        self.inbox = f"{self.prefix}inbox:{uuid.uuid4().hex}"
        self.waiting: dict[str, asyncio.Future[Any]] = {}
        self.amqp: Any = None
        self.channel: Any = None
        self.consuming: Any = None  # the workers' channel
        self.tasks: list[asyncio.Task[Any]] = []  # the subscription's
        self.workers: list[asyncio.Task[Any]] = []  # the stream's: they stop, not cancelled
        self.stopping = False

    async def connect(self) -> None:
        if self.engine == "amqp":
            self.amqp = await aio_pika.connect(AMQP)
            self.channel = await self.amqp.channel(publisher_confirms=True)
            await self.channel.declare_queue(self.queue, durable=True)
        else:
            with contextlib.suppress(aioredis.ResponseError):  # BUSYGROUP: made by another
                await self.redis.xgroup_create(self.queue, "workers", id="0", mkstream=True)
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(self.inbox)
        self.tasks.append(asyncio.create_task(self._listen(pubsub)))

    async def _listen(self, pubsub: Any) -> None:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            record = json.loads(message["data"])
            waiter = self.waiting.pop(record["id"], None)
            if waiter is not None and not waiter.done():
                waiter.set_result(record["result"])

    async def submit(self, x: int, y: int) -> asyncio.Future[Any]:
        job = uuid.uuid4().hex
        waiter = self.waiting[job] = asyncio.get_running_loop().create_future()
        record = json.dumps({"id": job, "state": "pending", "notify": self.inbox})
        await self.redis.set(f"{self.prefix}job:{job}", record, nx=True, ex=TTL)
        body = json.dumps({"job": job, "x": x, "y": y}).encode()
        if self.engine == "amqp":
            message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await self.channel.default_exchange.publish(message, self.queue, mandatory=True)
        else:
            await self.redis.xadd(self.queue, {"m": body})
        return waiter

    async def run(self, body: bytes) -> None:
        """One task: the record (skip a job no longer pending), the work, the result."""
        message = json.loads(body)
        key = f"{self.prefix}job:{message['job']}"
        found = await self.redis.get(key)
        if found is None or json.loads(found)["state"] != "pending":
            return
        notify = json.loads(found)["notify"]
        done = json.dumps(
            {"id": message["job"], "state": "succeeded", "result": message["x"] + message["y"]}
        )
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(key, done, ex=TTL)
            pipe.publish(notify, done)
            await pipe.execute()

    async def serve(self) -> None:
        """Start the workers: ``CONCURRENCY`` tasks at a time."""
        if self.engine == "amqp":
            channel = self.consuming = await self.amqp.channel()
            await channel.set_qos(prefetch_count=CONCURRENCY)
            queue = await channel.declare_queue(self.queue, durable=True)

            async def on_message(message: Any) -> None:
                await self.run(message.body)
                await message.ack()

            await queue.consume(on_message)
            return
        self.workers.append(asyncio.create_task(self._stream_worker(uuid.uuid4().hex)))

    async def _stream_worker(self, name: str) -> None:
        """Up to ``CONCURRENCY`` entries at a time, run together, acked in one ``XACK``."""
        while not self.stopping:
            reply = await self.redis.xreadgroup(
                "workers", name, {self.queue: ">"}, count=CONCURRENCY, block=1000
            )
            for _, entries in reply or ():
                await asyncio.gather(*(self.run(fields[b"m"]) for _, fields in entries))
                await self.redis.xack(self.queue, "workers", *(entry for entry, _ in entries))

    async def close(self, *, clean: bool) -> None:
        self.stopping = True  # a cancelled XREADGROUP BLOCK hangs redis-py: let it return
        await asyncio.gather(*self.workers)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.consuming is not None:
            await self.consuming.close()
        if clean:
            if self.engine == "amqp":
                await self.channel.queue_delete(self.queue)
            else:
                await self.redis.delete(self.queue)
            async for key in self.redis.scan_iter(f"{self.prefix}*", count=1000):
                await self.redis.delete(key)
        if self.amqp is not None:
            await self.amqp.close()
        await self.redis.aclose()


@contextlib.asynccontextmanager
async def raw_tasks(
    engine: str, token: str, start_workers: Callable[[], Awaitable[Any]] | None
) -> AsyncIterator[RawTasks]:
    """A connected submitter; its workers here (``start_workers`` None) or wherever
    ``start_workers`` starts them (other processes, which connect the same way)."""
    side = RawTasks(engine, token)
    await side.connect()
    stop = None
    try:
        if start_workers is None:
            await side.serve()
        else:
            stop = await start_workers()
        yield side
    finally:
        if stop is not None:
            await stop()
        await side.close(clean=True)
