"""The keeper of a closing consumer: what it reclaims as the consumer closes goes to another,
and it ends as soon as nothing is held.

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


async def test_a_closed_consumer_s_keeper_ends_once_nothing_is_held(redis_url: str) -> None:
    """With nothing held (at close, or once the last held delivery is settled) the keeper
    ends then, not when it would next look (after up to ``claim_interval``, here an hour): a
    web app's lifespan loop ended before that, and the keeper died pending ("Task was
    destroyed but it is pending")."""
    url = engines.with_query(redis_url, claim_idle=7200, claim_interval=3600)
    broker = QueueBroker.from_url(url, queues=[JOBS])
    await broker.connect()
    try:
        idle = await broker.consume(JOBS)
        assert isinstance(idle, RedisConsumer) and idle.keeper.task is not None
        await asyncio.sleep(0.1)  # the keeper is in its sleep
        await idle.close()
        await asyncio.wait_for(asyncio.shield(idle.keeper.task), 60)  # hang guard

        await broker.send(JOBS, {"n": 1})
        busy = await broker.consume(JOBS)
        assert isinstance(busy, RedisConsumer) and busy.keeper.task is not None
        delivery = await asyncio.wait_for(busy.get(), 60)
        await busy.close()
        await asyncio.sleep(0.1)
        assert not busy.keeper.task.done(), "it keeps touching what is still held"
        await delivery.ack()
        await asyncio.wait_for(asyncio.shield(busy.keeper.task), 60)  # hang guard
    finally:
        await broker.close()
