"""Recovery inside one process, written once for every engine: a server restarted under a
running agent, a server that lost everything, connect() against a dead port and against a
server that comes up late, a handler that outlives the redelivery timeout.

Consumer loops and subscriptions never end; they reconnect and go on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from microhive import MicroAgent, QueueBroker, SignalBus, TransportError, consumer, receiver
from microhive.testing import eventually
from microhive.transports.links import LinkDown

from ..fault_agents import JOBS, PING
from . import Engine, Server

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


def pending_tasks_of(package: str) -> list[asyncio.Task[object]]:
    """Pending tasks whose coroutine is code of ``package`` (a transport's folder): what
    would be ``Task was destroyed but it is pending!`` once the loop ends."""
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if not task.done() and code is not None and code.co_filename.startswith(package):
            found.append(task)
    return found


async def sends(broker: QueueBroker, payload: Any) -> bool:
    """One send to ``jobs`` goes through: what a test polls while a link comes back."""
    try:
        await broker.queue("jobs").send(payload)
    except TransportError:
        return False
    return True


async def until(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Wait for an outcome; the timeout only ends a hung test, it measures nothing."""
    return await eventually(condition, timeout, 0.02)


async def _length_is(broker: QueueBroker, expected: int) -> bool:
    return await broker.length(JOBS) == expected


async def server_restart_then_everything_goes_on(
    engine: Engine, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """The server is SIGKILLed under a running agent: a send made meanwhile waits for it
    (it neither fails nor returns early), the consumer gets what was sent, the bus
    subscribes again and answers a call, and the logs say so."""
    caplog.set_level(logging.INFO, "microhive")
    url = engine.on(server)
    bus, broker = SignalBus.from_url(url), QueueBroker.from_url(url)
    agent = Agent(bus, broker, settings={"jobs": [], "pings": []})
    async with bus, broker, agent:
        await broker.send(JOBS, {"n": 1})
        await until(lambda: agent.settings["jobs"] == [1])
        await asyncio.to_thread(server.kill)
        sending = asyncio.ensure_future(broker.send(JOBS, {"n": 2}))
        await asyncio.sleep(0.5)
        assert not sending.done(), "the send waits for the server"
        await asyncio.to_thread(server.start)
        async with asyncio.timeout(60):  # ends a hung test only
            await sending
        await until(lambda: set(agent.settings["jobs"]) == {1, 2})
        if engine.exactly_once:
            assert agent.settings["jobs"] == [1, 2]
        # else a killed server may have forgotten the ack of 1: at least once
        await until(lambda: all(line in caplog.text for line in engine.recovered))
        assert await bus.signal(PING).call("test", n=3, timeout=30) == 3
        assert agent.settings["pings"] == [3]
        await until(lambda: _length_is(broker, 0))


async def server_that_lost_everything_gets_its_queues_again(engine: Engine, server: Server) -> None:
    """The server comes back empty (no queue, no consumer group): a send declares the queue
    again and the running consumer gets it."""
    assert engine.forget is not None
    broker = QueueBroker.from_url(engine.on(server))
    agent = Worker(broker=broker, settings={"jobs": []})
    async with broker, agent:
        await broker.send(JOBS, {"n": 1})
        await until(lambda: agent.settings["jobs"] == [1])
        await asyncio.to_thread(server.kill)
        engine.forget(server)
        await asyncio.to_thread(server.start)
        async with asyncio.timeout(60):  # ends a hung test only
            await broker.send(JOBS, {"n": 2})
        await until(lambda: agent.settings["jobs"] == [1, 2])
        await until(lambda: _length_is(broker, 0))


def _transports(engine: Engine, url: str) -> list[SignalBus | QueueBroker]:
    made: list[SignalBus | QueueBroker] = [QueueBroker.from_url(url)]
    return [SignalBus.from_url(url), *made] if engine.signals else made


async def connect_to_a_dead_port_gives_up_with_link_down(
    engine: Engine, port: int, caplog: pytest.LogCaptureFixture
) -> list[str]:
    """No server: connect() keeps trying for ``connect_timeout`` (retries included), then
    raises LinkDown naming where it tried, never the password — nor do the logs. Returns
    the errors' messages."""
    caplog.set_level(logging.DEBUG, "microhive")
    userinfo = f"app:{SECRET}" if engine.credentials else ""
    url = engine.url(port, userinfo, connect_timeout=1)
    messages = []
    for transport in _transports(engine, url):
        caplog.clear()
        assert SECRET not in repr(transport)
        with pytest.raises(LinkDown) as caught:
            await transport.connect()
        message = str(caught.value)
        messages.append(message)
        assert re.search(r"c(annot|ould not) connect to", message), message
        where = f"app:***@127.0.0.1:{port}" if engine.credentials else f"127.0.0.1:{port}"
        assert where in message and SECRET not in message, message
        assert re.search(engine.retried, f"{caplog.text}\n{message}"), "it tried more than once"
        assert not transport.connected
        assert SECRET not in caplog.text
    return messages


async def a_server_that_comes_up_within_the_budget_is_connected_to(
    engine: Engine, directory: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """connect() is refused at first, keeps trying, and connects once the server is up."""
    assert engine.private is not None
    caplog.set_level(logging.DEBUG, "microhive")
    server = engine.private(directory / engine.name)  # not started yet
    url = engine.on(server, connect_timeout=120)
    broker, bus = QueueBroker.from_url(url, queues=[JOBS]), SignalBus.from_url(url)
    connecting = asyncio.gather(broker.connect(), bus.connect())
    try:
        await until(lambda: re.search(engine.retried, caplog.text))  # refused at least once
        assert not connecting.done()
        await asyncio.to_thread(server.start)
        async with asyncio.timeout(120):  # ends a hung test only
            await connecting
        await broker.send(JOBS, {"n": 1})
        assert await broker.length(JOBS) == 1
    finally:
        connecting.cancel()
        await bus.close()
        await broker.close()
        await asyncio.to_thread(server.stop)
        shutil.rmtree(server.directory, ignore_errors=True)


async def a_long_handler_keeps_its_message(url: str) -> None:
    """A handler that runs longer than the engine's redelivery timeout (in ``url``) keeps
    its message: no second consumer is handed it meanwhile."""
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
        await until(lambda: _length_is(first, 0))
    assert calls == [1], "delivered again while its handler was still running"
