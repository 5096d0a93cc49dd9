"""Recovery: the shared scenarios (tests/scenarios/recovery.py) on a private RabbitMQ node;
on the shared server, through a proxy that cuts the connection, what a send does when it
waited for the reconnect, and that no task of the transport outlives ``close()``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest

from microhive import MicroAgent, QueueBroker, SignalBus, TransportError, consumer
from microhive.sync import Publisher
from microhive.transports.amqp import AmqpBroker

from .. import engines
from ..scenarios import AMQP, Server, recovery
from .conftest import QUEUES, SIGNALS, eventually, plain_url, prefix_of
from .proxy import Proxy

PACKAGE = str(Path(__file__).resolve().parents[2] / "microhive" / "transports" / "amqp")


@pytest.mark.slow
async def test_node_restart_then_everything_goes_on(
    private_rabbit: Server, caplog: pytest.LogCaptureFixture
) -> None:
    await recovery.server_restart_then_everything_goes_on(AMQP, private_rabbit, caplog)


@pytest.mark.slow
async def test_node_that_lost_everything_gets_its_queues_again(private_rabbit: Server) -> None:
    await recovery.server_that_lost_everything_gets_its_queues_again(AMQP, private_rabbit)


async def test_connect_to_a_dead_port_gives_up_with_link_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = engines.free_port()
    for message in await recovery.connect_to_a_dead_port_gives_up_with_link_down(
        AMQP, port, caplog
    ):
        assert f"amqp://app:***@127.0.0.1:{port}/" in message
        assert "within 1 s (connect_timeout)" in message, message


@pytest.mark.slow
async def test_a_node_that_comes_up_within_the_budget_is_connected_to(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await recovery.a_server_that_comes_up_within_the_budget_is_connected_to(AMQP, tmp_path, caplog)


@pytest.fixture
async def proxy(amqp_url: str) -> AsyncIterator[Proxy]:
    made = await Proxy(amqp_url).start()
    try:
        yield made
    finally:
        await made.close()


async def _delete_queue(url: str, name: str) -> None:
    connection = await aio_pika.connect(plain_url(url))
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)


async def test_a_send_that_waited_for_the_reconnect_declares_its_queue_again(
    proxy: Proxy, amqp_url: str
) -> None:
    """The queue is gone when the link comes back (as a queue declared just before a crash
    of the node can be): the send that waited declares it on the new connection, instead
    of publishing on the strength of the old connection's declaration (unroutable)."""
    broker = QueueBroker.from_url(proxy.url, queues=QUEUES)
    assert isinstance(broker, AmqpBroker)
    try:
        await broker.jobs.send({"n": 1})
        generation = broker.link.generation
        await proxy.cut()
        await eventually(lambda: not broker.link.up)
        await _delete_queue(amqp_url, prefix_of(amqp_url) + "jobs")
        sending = asyncio.ensure_future(broker.jobs.send({"n": 2}))
        await asyncio.sleep(0.05)
        assert not sending.done(), "the send waits for the link"
        await proxy.restore()
        await sending
        assert broker.link.generation == generation + 1
        assert await broker.jobs.length() == 1
    finally:
        await broker.close()


async def test_the_sync_publisher_declares_its_queue_again_after_a_reconnect(
    proxy: Proxy, amqp_url: str
) -> None:
    """microhive.sync.Publisher, as in the node-restart fault test, deterministically."""
    publisher = Publisher(proxy.url)
    try:
        await asyncio.to_thread(publisher.send, "jobs", {"n": 1})
        await proxy.cut()
        await _delete_queue(amqp_url, prefix_of(amqp_url) + "jobs")
        accepted = proxy.accepted
        sending = asyncio.ensure_future(asyncio.to_thread(publisher.send, "jobs", {"n": 2}))
        await asyncio.sleep(0.2)
        await proxy.restore()
        await sending
        assert proxy.accepted > accepted, "the publisher reconnected"
    finally:
        await asyncio.to_thread(publisher.close)
    broker = QueueBroker.from_url(amqp_url, queues=QUEUES)
    try:
        assert await broker.jobs.length() == 1
    finally:
        await broker.close()


def _ours() -> list[asyncio.Task[object]]:
    """Pending tasks whose coroutine is the AMQP transport's own code."""
    return recovery.pending_tasks_of(PACKAGE)


def _recovering(owner: str) -> bool:
    return any(
        getattr(task.get_coro(), "__qualname__", "") == f"{owner}._recover" for task in _ours()
    )


class Worker(MicroAgent):
    @consumer(QUEUES.jobs)
    async def job(self, n: int) -> None:
        self.settings["done"].append(n)


async def test_no_task_of_the_transport_outlives_close(amqp_url: str) -> None:
    """Channel errors start recovery tasks (the bus's, a consumer's); a close() right after
    ends them: none is left pending (``Task was destroyed but it is pending!``)."""
    bus = SignalBus.from_url(amqp_url, signals=SIGNALS)
    broker = QueueBroker.from_url(amqp_url, queues=QUEUES)
    agent = Worker(broker=broker, settings={"done": []})
    await bus.connect()
    await agent.start()
    try:
        await broker.jobs.send({"n": 1})
        await eventually(lambda: agent.settings["done"] == [1])
        prefix = prefix_of(amqp_url)
        connection = await aio_pika.connect(plain_url(amqp_url))
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(prefix + "jobs")  # RabbitMQ cancels the consumer
            await channel.exchange_delete(prefix + "microhive:signals")
        with pytest.raises(TransportError):  # binding to the deleted exchange: a channel error
            await bus.subscribe(["elsewhere"], _ignore)
        await eventually(lambda: _recovering("AmqpBus"))
    finally:
        await agent.stop()
        await broker.close()
        await bus.close()
    assert _ours() == []


async def _ignore(envelope: object) -> None:
    pass


async def test_unconfirmed_sends_time_out_together_and_the_link_goes_on(proxy: Proxy) -> None:
    """RabbitMQ answers nothing (a resource alarm looks like this): every send waiting for
    its confirm fails at retry_timeout with a clear error — one timer watches them all —
    while a caller cancelled meanwhile is cancelled, not timed out; once RabbitMQ answers
    again the same broker sends."""
    separator = "&" if "?" in proxy.url else "?"
    broker = QueueBroker.from_url(f"{proxy.url}{separator}retry_timeout=1", queues=QUEUES)
    try:
        await broker.jobs.send({"n": 0})  # declared, and the connection is up
        proxy.hold()
        sends = [asyncio.ensure_future(broker.jobs.send({"n": n})) for n in range(1, 6)]
        cancelled = asyncio.ensure_future(broker.jobs.send({"n": 6}))
        await asyncio.sleep(0.2)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        for sending in sends:  # (wait_for only ends a hang: without the timer they would wait)
            with pytest.raises(TransportError, match="did not confirm a message"):
                await asyncio.wait_for(sending, 60)
        proxy.release()
        await eventually(lambda: recovery.sends(broker, {"n": "after"}), 15)
    finally:
        proxy.release()
        await broker.close()
