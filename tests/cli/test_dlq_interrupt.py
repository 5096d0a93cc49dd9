"""``microhive dlq requeue|purge`` on thousands of dead letters: progress per step, and a
Ctrl-C (SIGINT to a real subprocess) mid-way that loses nothing and duplicates nothing."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import AsyncIterator, Callable

import pytest

from microhive import Queue, QueueBroker, private_catalog
from microhive.envelope import new_id

from .. import engines
from ..amqp import server as amqp_server
from .helpers import Process, run

MH = ("-m", "microhive")
TOTAL = 4000
STEP = 10


async def _redis(prefix: str) -> AsyncIterator[str]:
    url = engines.with_query(engines.require_redis(), prefix=f"{prefix}:")
    yield url
    await engines.delete_prefix(url, f"{prefix}:")


async def _nats(prefix: str) -> AsyncIterator[str]:
    url = engines.with_query(engines.require_nats(), prefix=prefix)
    yield url
    await engines.delete_nats_prefix(url, prefix)


async def _amqp(prefix: str) -> AsyncIterator[str]:
    amqp_server.require_amqp()
    yield amqp_server.contract_url(prefix)


ENGINES: dict[str, Callable[[str], AsyncIterator[str]]] = {
    "redis": _redis,
    "nats": _nats,
    "amqp": _amqp,
}


@pytest.fixture(params=sorted(ENGINES))
async def url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    made = ENGINES[request.param](f"dlq{new_id()[:8]}")
    yield await anext(made)
    with pytest.raises(StopAsyncIteration):
        await anext(made)


with private_catalog():
    JOBS, DONE = Queue("jobs"), Queue("done")


async def fill(broker: QueueBroker, count: int) -> set[str]:
    """``count`` dead letters in ``jobs``; their message ids."""
    ids: set[str] = set()
    for start in range(0, count, 200):
        sent = [broker.send(JOBS, {"n": n}) for n in range(start, min(count, start + 200))]
        ids.update(await asyncio.gather(*sent))
    consumer = await broker.consume(JOBS, prefetch=200)
    for _ in range(count):
        delivery = await consumer.get()
        await delivery.dead_letter("bulk")
    await consumer.close()
    return ids


async def drain(broker: QueueBroker, queue: Queue) -> list[str]:
    """The ids of every message of ``queue`` (consumed and acked)."""
    expected = await broker.length(queue)
    consumer = await broker.consume(queue, prefetch=500)
    ids: list[str] = []
    async with asyncio.timeout(120):
        while len(ids) < expected:
            delivery = await consumer.get()
            assert delivery.envelope is not None
            ids.append(delivery.envelope.id)
            await delivery.ack()
    await consumer.close()
    assert await broker.length(queue) == 0, "more than the length said: duplicates"
    return ids


async def test_ctrl_c_mid_requeue_loses_and_duplicates_nothing(url: str) -> None:
    async with QueueBroker.from_url(url) as broker:
        sent = await fill(broker, TOTAL)
        assert (await broker.stats(JOBS)).dead_letters == TOTAL
        command = (*MH, "dlq", "requeue", "jobs", "--to", "done", "--step", str(STEP))
        process = await asyncio.to_thread(Process, *command, "--broker", url)
        try:
            # a step done (progress lines go to stderr, merged here), then Ctrl-C
            await asyncio.to_thread(process.wait_for_line, rf"^requeued [1-9]\d*/{TOTAL}$", 60)
            process.popen.send_signal(signal.SIGINT)
            code = await asyncio.to_thread(process.wait, 120)
        finally:
            process.kill()
        assert code == 130, process.output
        said = re.search(rf"interrupted: requeued (\d+) of {TOTAL} dead letter", process.output)
        assert said is not None, process.output
        done = int(said.group(1))
        assert 0 < done < TOTAL, "interrupted mid-way"
        requeued = await drain(broker, DONE)
        still_dead = [
            letter.envelope.id
            for letter in await broker.dead_letters(JOBS, TOTAL * 2)
            if letter.envelope is not None
        ]
        assert len(requeued) == done, "the count it printed is what was requeued"
        assert len(set(requeued)) == len(requeued), "no message requeued twice"
        assert len(set(still_dead)) == len(still_dead)
        assert not set(requeued) & set(still_dead), "none both requeued and still dead"
        assert set(requeued) | set(still_dead) == sent, "none lost"


async def test_purge_shows_progress_and_json_shows_none(url: str) -> None:
    async with QueueBroker.from_url(url) as broker:
        await fill(broker, 30)
        piped = await asyncio.to_thread(
            run, *MH, "dlq", "purge", "jobs", "--step", "10", "--limit", "25", "--broker", url
        )
        assert piped.returncode == 0, piped.stderr
        assert piped.stderr.splitlines() == [f"purged {n}/25" for n in (0, 10, 20, 25)]
        assert piped.stdout.strip() == "purged 25 dead letter(s) of jobs"
        as_json = await asyncio.to_thread(
            run, *MH, "dlq", "purge", "jobs", "--step", "2", "--json", "--broker", url
        )
        assert as_json.returncode == 0, as_json.stderr
        assert as_json.stderr == ""
        assert json.loads(as_json.stdout) == {"queue": "jobs", "purged": 5}
        assert (await broker.stats(JOBS)).dead_letters == 0
