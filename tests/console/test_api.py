"""The console's HTTP API and event stream on every engine: the console in-process (the
test's event loop) next to a worker agent; agents alive by heartbeats, queue samples, dead
letters listed, requeued (one, by key) and purged (by filters), signals seen."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from microhive import MicroAgent, Queue, QueueBroker, Signal, SignalBus, consumer
from microhive.console import console_app
from microhive.testing import eventually
from tests.console.server import events, serving
from tests.contract import conftest as contract
from tests.contract.conftest import Transport

# the contract suite's engines: one namespace per test on each, deleted afterwards
engine, transport, url = contract.engine, contract.transport, contract.url

ORDERS = Queue("console_api_orders")
PING = Signal("console_api_ping", ["n"])
TOKEN = "api-test-token"
BEARER = {"authorization": f"Bearer {TOKEN}"}


class Worker(MicroAgent):
    """Fails while ``broken`` (no retries: straight to the dead letters); records the rest."""

    broken = True
    handled: list[str] = []

    @consumer(ORDERS, retries=0)
    async def order(self, item: str) -> None:
        if type(self).broken:
            raise RuntimeError(f"broken worker, cannot take {item}")
        type(self).handled.append(item)


@pytest.fixture
def worker() -> Iterator[type[Worker]]:
    Worker.broken, Worker.handled = True, []
    yield Worker


def bus_url(transport: Transport, url: str) -> str:
    """Kafka carries no signals: its hive's bus is an in-process one."""
    return url if transport.signals else "memory://console-api"


async def test_console_api(transport: Transport, url: str, worker: type[Worker]) -> None:
    bus = SignalBus.from_url(bus_url(transport, url))
    broker = QueueBroker.from_url(url)
    agent = worker(bus, broker, heartbeat=0.3)
    app = console_app(
        bus=bus_url(transport, url), broker=url, agents=[worker], signals=[PING.name],
        token=TOKEN, every=0.2,
    )  # fmt: skip
    await agent.start()
    try:
        async with serving(app) as client:
            await _check(client, bus, broker, worker)
    finally:
        await agent.stop(grace_period=1)
        await bus.close()
        await broker.close()


async def _check(client: Any, bus: SignalBus, broker: QueueBroker, worker: type[Worker]) -> None:
    # nothing without a login; a wrong token is refused
    assert (await client.get("/api/overview")).status_code == 401
    wrong = {"authorization": "Bearer not-the-token"}
    assert (await client.get("/api/overview", headers=wrong)).status_code == 401
    assert (await client.get("/", follow_redirects=False)).headers["location"] == "login"

    async def alive() -> bool:
        overview = (await client.get("/api/overview", headers=BEARER)).json()
        return any(a["agent"] == "Worker" and a["alive"] for a in overview["agents"])

    assert await eventually(alive, timeout=30)

    for item in ("apple", "pear"):
        await broker.queue(ORDERS.name).send({"item": item})

    async def dead(count: int) -> bool:
        rows = (await client.get("/api/queues", headers=BEARER)).json()
        return any(r["queue"] == ORDERS.name and r["dead"] == count for r in rows)

    assert await eventually(lambda: dead(2), timeout=60)
    listed = (await client.get(f"/api/queues/{ORDERS.name}/dead", headers=BEARER)).json()
    letters = listed["letters"]
    letters.sort(key=lambda x: str(x["envelope"]["payload"]["item"]))  # Kafka: partitions
    assert [x["envelope"]["payload"] for x in letters] == [{"item": "apple"}, {"item": "pear"}]
    assert all("broken worker" in x["reason"] for x in letters)
    only_pear = await client.get(
        f"/api/queues/{ORDERS.name}/dead", params={"reason": "pear"}, headers=BEARER
    )
    assert [x["envelope"]["payload"]["item"] for x in only_pear.json()["letters"]] == ["pear"]
    unknown = await client.get("/api/queues/no_such_queue/dead", headers=BEARER)
    assert unknown.status_code == 404

    # the stream: a snapshot, then ticks carrying the signals that flowed
    reader = asyncio.ensure_future(events(client, 8, **BEARER))
    await asyncio.sleep(0.5)
    await bus.signal(PING).send("test", n=7)
    seen = await asyncio.wait_for(reader, 60)
    assert seen[0][0] == "snapshot"
    assert {q["queue"] for q in seen[0][1]["queues"]} >= {ORDERS.name}
    ticks = [data for name, data in seen[1:] if name == "tick"]
    # a ping that came before the stream opened is in the snapshot's recent signals
    flowed = [s for data in [seen[0][1], *ticks] for s in data["signals"]["new"]]
    assert any(s["name"] == PING.name and s["payload"] == {"n": 7} for s in flowed), ticks

    # a session: a change needs its CSRF token
    login = await client.post("/api/login", json={"token": TOKEN})
    assert login.status_code == 200
    csrf = login.json()["csrf"]
    apple = letters[0]["key"]
    path = f"/api/queues/{ORDERS.name}/dead"
    refused = await client.post(f"{path}/requeue", json={"key": apple})
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    other_site = await client.post(
        f"{path}/requeue",
        json={"key": apple},
        headers={"x-csrf-token": csrf, "origin": "http://evil.example"},
    )
    assert other_site.status_code == 403
    worker.broken = False
    requeued = await client.post(
        f"{path}/requeue", json={"key": apple}, headers={"x-csrf-token": csrf}
    )
    assert requeued.json() == {"queue": ORDERS.name, "requeued": 1}, requeued.text
    assert await eventually(lambda: worker.handled == ["apple"], timeout=60)
    again = await client.post(
        f"{path}/requeue", json={"key": apple}, headers={"x-csrf-token": csrf}
    )
    assert again.status_code == 404  # handled already: named clearly, nothing else moved
    bad = await client.post(f"{path}/purge", json={"limit": -1}, headers={"x-csrf-token": csrf})
    assert bad.status_code == 400 and "limit" in bad.json()["error"]
    purged = await client.post(
        f"{path}/purge", json={"reason": "pear"}, headers={"x-csrf-token": csrf}
    )
    assert purged.json() == {"queue": ORDERS.name, "purged": 1}
    assert await eventually(lambda: dead(0), timeout=60)
    assert worker.handled == ["apple"]
