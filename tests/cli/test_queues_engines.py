"""``microhive queues`` shows length, consumers, in flight and dead letters on every engine
(a real subprocess), "—" where the engine cannot tell (docs/operations.md)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from microhive import Queue, QueueBroker, private_catalog
from microhive.envelope import new_id
from microhive.testing import eventually

from .. import engines
from ..amqp import server as amqp_server
from .helpers import run

MH = ("-m", "microhive")
UNKNOWN_IN_FLIGHT = {"amqp", "kafka"}


async def _redis(prefix: str) -> AsyncIterator[str]:
    url = engines.with_query(engines.require_redis(), prefix=f"{prefix}:")
    yield url
    await engines.delete_prefix(url, f"{prefix}:")


async def _amqp(prefix: str) -> AsyncIterator[str]:
    amqp_server.require_amqp()
    yield amqp_server.contract_url(prefix)


async def _nats(prefix: str) -> AsyncIterator[str]:
    url = engines.with_query(engines.require_nats(), prefix=prefix)
    yield url
    await engines.delete_nats_prefix(url, prefix)


async def _kafka(prefix: str) -> AsyncIterator[str]:
    url = engines.with_query(engines.require_kafka(), prefix=prefix, **engines.KAFKA_TEST_OPTIONS)
    yield url
    await engines.delete_kafka_prefix(url, prefix)


ENGINES: dict[str, Callable[[str], AsyncIterator[str]]] = {
    "redis": _redis,
    "amqp": _amqp,
    "nats": _nats,
    "kafka": _kafka,
}


@pytest.fixture(params=sorted(ENGINES))
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str]]:
    name: str = request.param
    made = ENGINES[name](f"cliq{new_id()[:8]}")
    url = await anext(made)
    yield name, url
    with pytest.raises(StopAsyncIteration):
        await anext(made)


async def test_queues_shows_every_figure_while_a_consumer_runs(engine: tuple[str, str]) -> None:
    name, url = engine
    with private_catalog():
        jobs = Queue("jobs")
    async with QueueBroker.from_url(url) as broker:
        await broker.send(jobs, {"n": 1})
        consumer = await broker.consume(jobs)
        delivery = await consumer.get()
        await delivery.dead_letter("shown in the table")

        async def settled() -> Any:
            found = await broker.stats(jobs)
            ready = (found.length, found.consumers, found.dead_letters) == (0, 1, 1)
            return found if ready else None

        await eventually(settled, 60, 0.1)
        shown = await asyncio.to_thread(
            run, *MH, "queues", "jobs", "--json", "--broker", url, timeout=60
        )
        assert shown.returncode == 0, shown.stderr
        expected = {"queue": "jobs", "length": 0, "consumers": 1, "dead_letters": 1}
        expected["in_flight"] = None if name in UNKNOWN_IN_FLIGHT else 0
        assert json.loads(shown.stdout) == expected
        table = await asyncio.to_thread(run, *MH, "queues", "jobs", "--broker", url, timeout=60)
        assert table.returncode == 0, table.stderr
        in_flight = "—" if name in UNKNOWN_IN_FLIGHT else "0"
        assert table.stdout.splitlines()[1] == f"jobs\t0\t1\t{in_flight}\t1"
        await consumer.close()
