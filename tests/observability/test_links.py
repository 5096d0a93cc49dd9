"""Reconnect metrics and readiness: a private Redis killed under running agents and started
again; every link reports the loss and the recovery to middleware (``linked``), Metrics
counts them, and /readyz is 503 while a link is down."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from microhive import QueueBroker, SignalBus
from microhive.linkevents import LinkEvent
from microhive.middleware import Middleware
from microhive.observability.metrics import Metrics
from microhive.observability.runtime import serving
from microhive.testing import eventually

from .. import engines
from .agents import DONE, POST, WORK, Back, Front
from .test_server import get


class Heard(Middleware):
    def __init__(self) -> None:
        self.events: list[LinkEvent] = []

    def linked(self, event: LinkEvent) -> None:
        self.events.append(event)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[engines.RedisServer]:
    instance = engines.RedisServer(tmp_path / "redis")
    instance.start()
    yield instance
    instance.stop()


def samples(text: str, name: str) -> dict[tuple[str, str], float]:
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[sample.labels["engine"], sample.labels["role"]] = sample.value
    return found


async def test_a_killed_server_is_counted_and_unready_until_back(
    server: engines.RedisServer,
) -> None:
    url = engines.with_query(server.url, claim_idle=1)
    metrics, heard = Metrics(), Heard()
    bus = SignalBus.from_url(url, signals=[POST], middleware=[metrics, heard])
    broker = QueueBroker.from_url(url, queues=[WORK, DONE], middleware=[metrics, heard])
    agents = [Front(bus, broker), Back(bus, broker)]
    async with bus, broker, serving("0", metrics, agents, agents, bus, broker) as endpoint:
        assert endpoint is not None
        for agent in agents:
            await agent.start()

        async def readiness() -> tuple[int, dict[str, str]]:
            status, _, body = await get(endpoint.port, "/readyz")
            return status, json.loads(body)["waiting"]

        async def ready() -> bool:
            return (await readiness())[0] == 200

        await eventually(ready, 30, 0.05)
        server.kill()

        async def lost() -> dict[str, str] | None:
            status, waiting = await readiness()
            links = {k: v for k, v in waiting.items() if k.startswith("link redis")}
            return links if status == 503 and "link redis consumer" in links else None

        links = await eventually(lost, 30, 0.05)
        assert all(server.url.split("/0")[0] in reason for reason in links.values())
        text = (await get(endpoint.port, "/metrics"))[2].decode()
        assert samples(text, "microhive_link_lost_total").get(("redis", "consumer"), 0) >= 1
        assert samples(text, "microhive_links_down").get(("redis", "consumer"), 0) >= 1

        server.start()
        await broker.send(WORK, {"n": 1})  # the broker's link reconnects when it is used
        await eventually(ready, 60, 0.05)
        text = (await get(endpoint.port, "/metrics"))[2].decode()
        lost_counts = samples(text, "microhive_link_lost_total")
        back_counts = samples(text, "microhive_reconnects_total")
        assert back_counts == lost_counts, "every lost link came back, once each"
        assert {"broker", "bus", "consumer"} <= {role for _, role in back_counts}
        assert set(samples(text, "microhive_links_down").values()) == {0.0}
        for agent in agents:
            await agent.stop()

    down = [e for e in heard.events if not e.up]
    up = [e for e in heard.events if e.up]
    assert len(down) == len(up) >= 4, heard.events
    assert {e.engine for e in heard.events} == {"redis"}
    assert all(":" in e.url and "@" not in e.url for e in heard.events)
    assert heard.events[-1].up, "the last word is a recovery"


async def test_hooks_are_heard_once_and_not_after_close() -> None:
    """One middleware on a bus and a broker hears each event once; nothing once closed."""
    from microhive import linkevents

    heard = Heard()
    bus = SignalBus.from_url("memory://links", middleware=[heard])
    broker = QueueBroker.from_url("memory://links", middleware=[heard])
    async with bus, broker:
        link = Heard()  # any object that takes weak references
        linkevents.lost(link, "redis", "consumer jobs/c1", "redis://127.0.0.1:1/0")
        linkevents.lost(link, "redis", "consumer jobs/c1", "redis://127.0.0.1:1/0")
        assert [e.up for e in heard.events] == [False]
        assert heard.events[0].role == "consumer"
        assert linkevents.down() == heard.events
        linkevents.restored(link)
        linkevents.restored(link)
        assert [e.up for e in heard.events] == [False, True]
        assert linkevents.down() == []
    linkevents.lost(link, "redis", "broker", "redis://127.0.0.1:1/0")
    linkevents.closed(link)
    assert len(heard.events) == 2 and linkevents.down() == []
    await asyncio.sleep(0)
