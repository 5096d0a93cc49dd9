"""The contract suite runs against every transport through these fixtures.

Each transport adds itself to ``TRANSPORTS``; a test gets a fresh namespace on it (a private
hive for memory, a key prefix / vhost / topic prefix for real engines).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from microhive import Catalog, Namespace, Queue, QueueBroker, Signal, SignalBus
from microhive.envelope import new_id


@dataclass
class Transport:
    name: str
    make_url: Callable[[str], str]


TRANSPORTS = [Transport("memory", lambda ns: f"memory://{ns}")]


@pytest.fixture(params=TRANSPORTS, ids=[t.name for t in TRANSPORTS])
def transport(request: pytest.FixtureRequest) -> Transport:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def url(transport: Transport) -> str:
    return transport.make_url(f"t{new_id()[:10]}")


SIGNALS = Namespace(
    [
        Signal("ping", ["n"]),
        Signal("user_enter", ["name"]),
        Signal("check_user", ["user"]),
        Signal("slow", ["delay"]),
    ],
    kind="signal",
)
QUEUES = Namespace([Queue("jobs"), Queue("other")], kind="queue")
CATALOG = Catalog(SIGNALS, QUEUES)


class Factory:
    """Makes buses and brokers on the test's transport and closes them all at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opened: list[Any] = []

    async def bus(self, **options: Any) -> SignalBus:
        bus = SignalBus.from_url(self.url, signals=SIGNALS, **options)
        await bus.connect()
        self.opened.append(bus)
        return bus

    async def broker(self, queues: Any = QUEUES, **options: Any) -> QueueBroker:
        broker = QueueBroker.from_url(self.url, queues=queues, **options)
        await broker.connect()
        self.opened.append(broker)
        return broker


@pytest.fixture
async def factory(url: str) -> AsyncIterator[Factory]:
    made = Factory(url)
    try:
        yield made
    finally:
        for item in reversed(made.opened):
            await item.close()
