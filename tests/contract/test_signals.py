"""Signals: broadcast to every subscribed agent instance, arguments checked at the sender."""

from __future__ import annotations

import asyncio

import pytest

from microhive import (
    ConfigurationError,
    MicroAgent,
    PayloadError,
    SignalBus,
    UnknownNameError,
    receiver,
)

from .conftest import SIGNALS, Factory, Transport
from .helpers import eventually


class Listener(MicroAgent):
    @receiver(SIGNALS.user_enter, SIGNALS.ping)
    async def seen(self, signal, sender, **kwargs):
        self.settings["seen"].append((signal, sender, kwargs))


async def test_broadcast_reaches_every_instance(factory: Factory) -> None:
    sender_bus = await factory.bus()
    agents = [Listener(await factory.bus(), settings={"seen": []}) for _ in range(3)]
    for agent in agents:
        await agent.start()
    try:
        await sender_bus.user_enter.send("user_agent", name="ann")
        for agent in agents:
            seen = await eventually(lambda a=agent: a.settings["seen"])
            assert seen == [(SIGNALS.user_enter, "user_agent", {"name": "ann"})]
    finally:
        for agent in agents:
            await agent.stop()


async def test_instances_sharing_one_bus_each_receive(factory: Factory) -> None:
    bus = await factory.bus()
    agents = [Listener(bus, settings={"seen": []}) for _ in range(2)]
    for agent in agents:
        await agent.start()
    try:
        await bus.ping.send("me", n=1)
        for agent in agents:
            await eventually(lambda a=agent: len(a.settings["seen"]) == 1)
    finally:
        for agent in agents:
            await agent.stop()


async def test_signal_is_the_declared_value(factory: Factory) -> None:
    bus = await factory.bus()
    agent = Listener(bus, settings={"seen": []})
    async with agent:
        await bus.ping.send("x", n=5)
        await bus.user_enter.send("y", name="bob")
        seen = await eventually(lambda: len(agent.settings["seen"]) == 2 and agent.settings["seen"])
        signals = {s for s, _, _ in seen}
        assert signals == {SIGNALS.ping, SIGNALS.user_enter}


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({}, "missing ['name']"),
        ({"name": "a", "age": 3}, "undeclared ['age']"),
        ({"nom": "a"}, "missing ['name']"),
    ],
)
async def test_wrong_arguments_raise_at_the_sender(factory: Factory, kwargs, words) -> None:
    bus = await factory.bus()
    agent = Listener(bus, settings={"seen": []})
    async with agent:
        with pytest.raises(PayloadError, match=r"user_enter") as caught:
            await bus.user_enter.send("me", **kwargs)
        assert words in str(caught.value)
        await asyncio.sleep(0.05)
        assert agent.settings["seen"] == []


async def test_unknown_signal_is_a_clear_error(factory: Factory) -> None:
    bus = await factory.bus()
    with pytest.raises(UnknownNameError, match=r"unknown signal 'nope'.*ping"):
        await bus.nope.send("me")


async def test_failing_receiver_does_not_stop_delivery(factory: Factory) -> None:
    calls: list[int] = []

    class Flaky(MicroAgent):
        @receiver(SIGNALS.ping)
        async def on_ping(self, n, **kw):
            calls.append(n)
            if n == 1:
                raise RuntimeError("boom")

    bus = await factory.bus()
    async with Flaky(bus):
        await bus.ping.send("me", n=1)
        await bus.ping.send("me", n=2)
        await eventually(lambda: sorted(calls) == [1, 2])


async def test_stopped_agent_no_longer_receives(factory: Factory) -> None:
    bus = await factory.bus()
    agent = Listener(bus, settings={"seen": []})
    async with agent:
        pass
    await bus.ping.send("me", n=1)
    await asyncio.sleep(0.05)
    assert agent.settings["seen"] == []


async def test_a_transport_without_signals_refuses_a_bus_clearly(
    transport: Transport, url: str
) -> None:
    if transport.signals:
        pytest.skip(f"{transport.name} has a signal bus")
    with pytest.raises(ConfigurationError) as raised:
        SignalBus.from_url(url, signals=SIGNALS)
    message = str(raised.value)
    assert "carries queues" in message
    assert all(scheme in message for scheme in ("redis://", "nats://", "amqp://"))
    assert "--bus" in message and "--broker" in message
