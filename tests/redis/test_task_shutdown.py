"""A task worker stopped before its method ran gives the message back at once.

The worker reads the job's record before it runs the method (a revoked job must not run).
If the agent is stopped while that read waits, the message must go back to the queue: on
Redis a handed-out entry is kept from reclaiming while its consumer lives, so a message
dropped there would wait for the process to end. The result store is reached through a
proxy that holds Redis's answers, which is what makes the read wait.
"""

from __future__ import annotations

from urllib.parse import quote

from microhive import MicroAgent, Namespace, Queue, QueueBroker, task
from microhive.testing import eventually
from microhive.transports.redis import RedisBroker

from ..amqp.proxy import Proxy

QUEUES = Namespace([Queue("shutdown_add", providing_args=["x", "y"])], kind="queue")


class Adder(MicroAgent):
    @task(QUEUES.shutdown_add, concurrency=2)
    async def add(self, x: int, y: int) -> int:
        return x + y


async def test_a_worker_stopped_while_it_reads_the_record_gives_the_message_back(
    redis_url: str,
) -> None:
    proxy = await Proxy(redis_url).start()
    separator = "&" if "?" in redis_url else "?"
    url = f"{redis_url}{separator}results={quote(proxy.url, safe='')}"
    first = QueueBroker.from_url(url, queues=QUEUES)
    second = QueueBroker.from_url(url, queues=QUEUES)
    await first.connect()
    await second.connect()
    try:
        job = await first.shutdown_add.submit(x=2, y=3)  # no worker yet: it waits queued
        proxy.hold()  # from now on the store's reads wait
        agent = Adder(None, first, grace_period=0.2)
        await agent.start()
        assert isinstance(first, RedisBroker)
        [consumer] = first._consumers
        # handed out to a worker, which now waits for the record
        await eventually(lambda: len(consumer.held) == 1 and not consumer.handover, 30)
        await agent.stop()  # the grace period ends: the worker is cancelled in the read
        assert consumer.held == {}, "given back, not left held by a stopped consumer"
        proxy.release()
        async with Adder(None, second):  # another worker takes it without a timeout first
            assert await job.result(timeout=60) == 5
    finally:
        proxy.release()
        await first.close()
        await second.close()
        await proxy.close()
