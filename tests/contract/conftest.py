"""The contract suite runs against every transport through these fixtures.

Each transport adds itself to ``TRANSPORTS``; a test gets a fresh namespace on it (a private
hive for memory, a key prefix / vhost / topic prefix for real engines).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from microhive import Catalog, Namespace, Queue, QueueBroker, Signal, SignalBus
from microhive.envelope import new_id

from .. import engines
from ..amqp import server as amqp_server

if TYPE_CHECKING:
    from .task_agents import TaskFactory


@dataclass
class Transport:
    name: str
    make_url: Callable[[str], str]
    signals: bool = True
    """False: the transport has no signal bus (its bus refuses the URL); signal and call
    tests skip, and test_signals checks the refusal."""


TRANSPORTS = [
    Transport("memory", lambda ns: f"memory://{ns}"),
    # a key prefix per test; entries left pending by a closed consumer come back after 1 s
    Transport(
        "redis",
        lambda ns: engines.with_query(
            engines.REDIS_URL, prefix=f"microhive-test.{ns}:", claim_idle=1
        ),
    ),
    # a virtual host per test run, a name prefix per test
    Transport("amqp", amqp_server.contract_url),
    # a subject and stream prefix per test; unacknowledged messages come back after 1 s
    Transport(
        "nats",
        lambda ns: engines.with_query(engines.NATS_URL, prefix=f"mhtest_{ns}", ack_wait=1),
    ),
    # a topic prefix per test; small group timeouts so consumer groups form fast
    Transport(
        "kafka",
        lambda ns: engines.with_query(
            engines.KAFKA_URL, prefix=f"mhtest_{ns}", **engines.KAFKA_TEST_OPTIONS
        ),
        signals=False,
    ),
]


@pytest.fixture(params=TRANSPORTS, ids=[t.name for t in TRANSPORTS])
def transport(request: pytest.FixtureRequest) -> Transport:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def url(transport: Transport) -> str:
    return transport.make_url(f"t{new_id()[:10]}")


@pytest.fixture(autouse=True)
async def engine(transport: Transport, url: str) -> AsyncIterator[None]:
    """A real engine must be reachable (else skip; fail under CI=true); the test's
    namespace is deleted afterwards (this fixture is set up first, torn down last)."""
    if transport.name == "amqp":
        amqp_server.require_amqp()  # the run's virtual host is deleted at exit
        yield
        return
    if transport.name == "nats":
        engines.require_nats()
        yield
        await engines.delete_nats_prefix(url, str(dict(parse_qsl(urlsplit(url).query))["prefix"]))
        return
    if transport.name == "kafka":
        engines.require_kafka()
        yield
        await engines.delete_kafka_prefix(url, str(dict(parse_qsl(urlsplit(url).query))["prefix"]))
        return
    if transport.name != "redis":
        yield
        return
    engines.require_redis()
    yield
    await engines.delete_prefix(url, str(dict(parse_qsl(urlsplit(url).query))["prefix"]))


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

    def __init__(self, url: str, transport: Transport | None = None) -> None:
        self.url = url
        self.transport = transport
        self.opened: list[Any] = []

    async def bus(self, **options: Any) -> SignalBus:
        if self.transport is not None and not self.transport.signals:
            pytest.skip(
                f"{self.transport.name} has no signal bus: covered by "
                "test_signals.py::test_a_transport_without_signals_refuses_a_bus_clearly"
            )
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
async def factory(url: str, transport: Transport) -> AsyncIterator[Factory]:
    made = Factory(url, transport)
    try:
        yield made
    finally:
        for item in reversed(made.opened):
            await item.close()


@pytest.fixture
async def tasks(transport: Transport, url: str) -> AsyncIterator[TaskFactory]:
    """Brokers that know the task queues and Math agents (task_agents.py), closed at the
    end; the results AMQP and Kafka kept in Redis are deleted."""
    from .task_agents import TaskFactory, forget_results, task_url  # it imports this module

    made = TaskFactory(task_url(transport, url))
    try:
        yield made
    finally:
        for item in reversed(made.opened):
            await item.close()
        await forget_results(made.url)
