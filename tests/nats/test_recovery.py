"""Recovery inside one process: a restarted server, a server that lost its streams, a
long handler. Consumer loops and subscriptions never end; they
reconnect and go on."""

from __future__ import annotations

import asyncio
import inspect
import logging
import shutil
from collections.abc import Callable
from typing import Any

import pytest

from microhive import MicroAgent, QueueBroker, SignalBus, consumer, receiver
from microhive.transports.links import LinkDown

from .. import engines
from ..fault_agents import JOBS, PING

SECRET = "s3cret-Pass-word"


class Worker(MicroAgent):
    @consumer(JOBS, concurrency=4)
    async def job(self, n: int) -> None:
        self.settings["jobs"].append(n)


class Agent(Worker):
    @receiver(PING)
    async def ping(self, n: int) -> int:
        self.settings["pings"].append(n)
        return n


async def until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(0.02)


async def _length_is(broker: QueueBroker, expected: int) -> bool:
    return await broker.length(JOBS) == expected


async def test_server_restart_then_everything_goes_on(
    private_nats: engines.NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "microhive")
    url = engines.with_query(private_nats.url, ack_wait=1, expires=1, reconnect_wait=0.3)
    bus, broker = SignalBus.from_url(url), QueueBroker.from_url(url)
    agent = Agent(bus, broker, settings={"jobs": [], "pings": []})
    async with bus, broker, agent:
        await broker.send(JOBS, {"n": 1})
        await until(lambda: agent.settings["jobs"] == [1])
        private_nats.kill()
        sending = asyncio.ensure_future(broker.send(JOBS, {"n": 2}))  # waits for the server
        await asyncio.sleep(0.5)
        assert not sending.done()
        private_nats.start()
        await asyncio.wait_for(sending, 20)
        # a killed server may have forgotten the ack of 1 (it writes acks lazily): at least once
        await until(lambda: {1, 2} <= set(agent.settings["jobs"]), 20)
        await until(lambda: "subscribed again" in caplog.text, 10)
        assert await bus.signal(PING).call("test", n=3, timeout=5) == 3
        await until(lambda: _length_is(broker, 0))
    assert "signals published between" in caplog.text, "the loss window is logged"
    assert "connected to" in caplog.text and "again" in caplog.text


async def test_server_that_lost_everything_gets_streams_and_consumers_again(
    private_nats: engines.NatsServer,
) -> None:
    url = engines.with_query(private_nats.url, ack_wait=1, expires=1, reconnect_wait=0.3)
    broker = QueueBroker.from_url(url)
    agent = Worker(broker=broker, settings={"jobs": []})
    async with broker, agent:
        await broker.send(JOBS, {"n": 1})
        await until(lambda: agent.settings["jobs"] == [1])
        private_nats.kill()
        shutil.rmtree(private_nats.directory / "store")  # no stream, no consumer
        private_nats.start()
        await broker.send(JOBS, {"n": 2})
        await until(lambda: agent.settings["jobs"] == [1, 2], 20)
        await until(lambda: _length_is(broker, 0))


async def test_connect_keeps_trying_for_connect_timeout_then_raises_link_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """connect_timeout is the whole budget of connect(), retries included (dead port)."""
    caplog.set_level(logging.DEBUG, "microhive.nats")
    port = engines.free_port()
    url = f"nats://app:{SECRET}@127.0.0.1:{port}?connect_timeout=1"
    for transport in (SignalBus.from_url(url), QueueBroker.from_url(url)):
        caplog.clear()
        with pytest.raises(LinkDown) as caught:
            await transport.connect()
        message = str(caught.value)
        assert f"cannot connect to nats://app:***@127.0.0.1:{port}" in message, message
        assert "(tried for 1 s)" in message and SECRET not in message, message
        assert not transport.connected
        assert "; trying again" in caplog.text, "it tried more than once"
        assert SECRET not in caplog.text


async def test_a_long_handler_keeps_its_message(nats_url: str) -> None:
    """In-progress acks keep a message held longer than ack_wait from a second delivery."""
    url = engines.with_query(nats_url, ack_wait=0.4)
    calls: list[int] = []

    class Slow(MicroAgent):
        @consumer(JOBS)
        async def job(self, n: int) -> None:
            calls.append(n)
            await asyncio.sleep(1.5)

    first, second = QueueBroker.from_url(url), QueueBroker.from_url(url)
    async with first, second, Slow(broker=first), Slow(broker=second):
        await first.send(JOBS, {"n": 1})
        await until(lambda: calls == [1])
        await until(lambda: _length_is(first, 0), 5)
    assert calls == [1], "delivered again while its handler was still running"


async def test_works_on_nats_py_callbacks_when_its_internals_are_unknown(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hand-over straight from nats-py's parser is an optimisation with a fallback."""
    from nats.aio.client import Client

    from microhive.transports.nats import internals

    monkeypatch.setattr(internals, "client_class", lambda: Client)
    bus, broker = SignalBus.from_url(nats_url), QueueBroker.from_url(nats_url)
    agent = Agent(bus, broker, settings={"jobs": [], "pings": []})
    async with bus, broker, agent:
        assert not hasattr(broker._link.client, "direct")  # type: ignore[attr-defined]
        await broker.send(JOBS, {"n": 1}, delay=0.2)
        assert await bus.signal(PING).call("test", n=3, timeout=5) == 3
        await until(lambda: agent.settings["jobs"] == [1])
        await until(lambda: _length_is(broker, 0))
