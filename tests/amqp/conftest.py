"""Fixtures for RabbitMQ-specific tests: a URL per test on the shared server, plain clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from microhive import Namespace, Queue, QueueBroker, Signal, SignalBus
from microhive.envelope import new_id
from microhive.testing import eventually as eventually_

from ..processes import records  # noqa: F401 - the fixture, for this package
from ..scenarios import AMQP, Server, running
from . import server

QUEUES = Namespace([Queue("jobs"), Queue("events_feed")], kind="queue")
SIGNALS = Namespace([Signal("ping", ["n"])], kind="signal")


@pytest.fixture
def amqp_url() -> str:
    """The shared server, this run's virtual host, a name prefix of this test's own."""
    server.require_amqp()
    return server.contract_url(f"a{new_id()[:10]}")


@pytest.fixture
def private_rabbit(tmp_path: Path) -> Iterator[Server]:
    """A private RabbitMQ node, free to kill and restart (a few seconds each way)."""
    yield from running(AMQP, tmp_path)


def prefix_of(url: str) -> str:
    return dict(part.split("=", 1) for part in urlsplit(url).query.split("&") if part)["prefix"]


def plain_url(url: str) -> str:
    """The URL without microhive's query options, for plain pika / aio-pika clients."""
    return url.split("?", 1)[0]


class Opened:
    """Buses and brokers made in a test, closed at its end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.items: list[Any] = []

    async def broker(self, url: str | None = None, **options: Any) -> QueueBroker:
        options.setdefault("queues", QUEUES)
        broker = QueueBroker.from_url(url or self.url, **options)
        await broker.connect()
        self.items.append(broker)
        return broker

    async def bus(self, url: str | None = None, **options: Any) -> SignalBus:
        options.setdefault("signals", SIGNALS)
        bus = SignalBus.from_url(url or self.url, **options)
        await bus.connect()
        self.items.append(bus)
        return bus


@pytest.fixture
async def opened(amqp_url: str) -> AsyncIterator[Opened]:
    made = Opened(amqp_url)
    try:
        yield made
    finally:
        for item in reversed(made.items):
            await item.close()


async def eventually(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    return await eventually_(condition, timeout, 0.01)
