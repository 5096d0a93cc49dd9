"""A consumer that closes while its keeper reclaims a dead consumer's entries gives them back.

The keeper asks Redis how often a reclaimed entry was delivered (``max_deliver``) before it
hands the entries on; a consumer closed during that question has emptied its handover
already, so entries handed on then would stay held by a closed consumer — touched by its
keeper (so nobody else reclaims them) until the process ended. The consumer is closed from
inside that step here, which is the moment the race needs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from microhive import Queue, QueueBroker
from microhive.transports.redis.consumer import RedisConsumer
from microhive.transports.redis.keeper import Keeper

from .. import engines

JOBS = Queue("keeper_jobs")


async def test_entries_reclaimed_as_the_consumer_closes_go_to_another(redis_url: str) -> None:
    url = engines.with_query(redis_url, claim_idle=1)
    dead, closing, other = (QueueBroker.from_url(url, queues=[JOBS]) for _ in range(3))
    for broker in (dead, closing, other):
        await broker.connect()
    try:
        await dead.send(JOBS, {"n": 1})
        taken = await (await dead.consume(JOBS)).get()
        await dead.close()  # as a crash: the entry stays pending, unsettled
        consumer = await closing.consume(JOBS)
        assert isinstance(consumer, RedisConsumer)
        keeper: Keeper = consumer.keeper
        asked = keeper._without_crash_loops

        async def closed_meanwhile(reclaimed: list[Any]) -> list[Any]:
            await consumer.close()
            return await asked(reclaimed)

        keeper._without_crash_loops = closed_meanwhile  # type: ignore[method-assign]
        assert keeper.task is not None
        await asyncio.wait_for(asyncio.shield(keeper.task), 60)  # hang guard
        assert not consumer.held
        delivery = await asyncio.wait_for((await other.consume(JOBS)).get(), 60)
        assert delivery.envelope is not None and taken.envelope is not None
        assert delivery.envelope.id == taken.envelope.id
        await delivery.ack()
    finally:
        for broker in (dead, closing, other):
            await broker.close()
