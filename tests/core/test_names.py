"""Names resolve the way the seed's code expects: declared once, usable anywhere.

Each test runs in a private catalog of its own (tests/conftest.py), which is exactly what a
program's default catalog is for the code inside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from microhive import (
    ConfigurationError,
    MicroAgent,
    Queue,
    QueueBroker,
    Signal,
    SignalBus,
    UnknownNameError,
    consumer,
    load_stuff,
    on,
    private_catalog,
    receiver,
)
from microhive.testing import eventually

from ..examples.test_seed_talk import CATALOG

SEED_CATALOG = CATALOG  # the talk's signals.json, as tests/examples/test_seed_talk.py has it


async def test_what_load_stuff_declared_is_usable_on_a_bare_bus_and_broker(tmp_path: Path) -> None:
    path = tmp_path / "signals.json"
    path.write_text(json.dumps(SEED_CATALOG))
    signals, _queues = load_stuff("file://" + str(path))
    bus = SignalBus.from_url("memory://names")  # no catalog given: the program's is used
    broker = QueueBroker.from_url("memory://names")
    seen: list[tuple[str, str]] = []

    class UserAgent(MicroAgent):
        @receiver(signals.user_enter)
        async def entered(self, name: str, sender: str) -> None:
            seen.append((name, sender))

    class Sender(MicroAgent):  # receives nothing: still sends the program's signals by name
        @on("post_start")
        async def greet(self) -> None:
            await self.bus.user_enter.send("user_agent", name="ann")  # the seed's spelling
            await self.bus.user_enter.send(name="bob")  # sender defaults to the agent
            await self.broker.email.send({"to": "ann"})
            await self.broker.send("email", {"to": "bob"})

    async with UserAgent(bus=bus), Sender(bus=bus, broker=broker):
        await bus.started.send("user_agent")
        await broker.started.send({"service_name": "my_app"})
        await eventually(lambda: len(seen) == 2, 5)
    assert sorted(seen) == [("ann", "user_agent"), ("bob", "Sender")]
    assert await broker.email.length() == 2
    assert await broker.started.length() == 1
    await bus.close()
    await broker.close()


async def test_declarations_in_python_are_usable_by_name_anywhere() -> None:
    Signal("ping", ["n"])
    Queue("jobs")
    bus = SignalBus.from_url("memory://python-names")
    broker = QueueBroker.from_url("memory://python-names")
    await bus.ping.send("me", n=1)
    await bus.signal("ping").send(n=2)
    await broker.jobs.send({"n": 1})
    assert await broker.queue("jobs").length() == 1
    await bus.close()
    await broker.close()


async def test_an_unknown_name_says_how_to_declare_it() -> None:
    bus = SignalBus.from_url("memory://unknown")
    broker = QueueBroker.from_url("memory://unknown")
    with pytest.raises(UnknownNameError) as info:
        _ = bus.user_entr
    text = str(info.value)
    assert "unknown signal 'user_entr' (known: none)" in text
    assert "Signal('user_entr', [...arguments])" in text and "load_stuff" in text
    with pytest.raises(UnknownNameError, match=r"Queue\('evnts'\)"):
        _ = broker.evnts
    assert not hasattr(broker, "evnts"), "an unknown name is also an AttributeError"


async def test_a_plain_name_addresses_an_existing_undeclared_queue() -> None:
    broker = QueueBroker.from_url("memory://plain")
    await broker.queue("events").send({"any": "payload"})
    await broker.queue("send").send(["a", "queue", "named", "like", "a", "method"])
    assert await broker.queue("events").length() == 1
    assert await broker.queue("send").length() == 1
    with pytest.raises(UnknownNameError):
        _ = broker.events  # attribute access stays strict: it catches typos
    await broker.close()


@pytest.mark.parametrize("name", ["send", "queue", "publish", "tail", "length", "values"])
def test_names_that_would_shadow_a_method_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"broker.queue\('{name}'\)"):
        Queue(name)
    with pytest.raises(ConfigurationError, match=rf"bus.signal\('{name}'\)"):
        Signal(name)


def test_the_refused_names_cover_every_public_method() -> None:
    from microhive.agent.views import BrokerView, BusView
    from microhive.declarations import NAME_PATTERN, SHADOWING_NAMES

    for cls in (QueueBroker, SignalBus, BrokerView, BusView):
        public = {n for n in dir(cls) if not n.startswith("_") and NAME_PATTERN.fullmatch(n)}
        assert public <= SHADOWING_NAMES, (cls.__name__, sorted(public - SHADOWING_NAMES))


def test_one_name_declared_twice_with_different_shapes_names_both_places(tmp_path: Path) -> None:
    Signal("user_enter", ["name"])
    path = tmp_path / "signals.json"
    path.write_text(json.dumps(SEED_CATALOG | {"signals": [{"name": "user_enter"}]}))
    with pytest.raises(ConfigurationError) as info:
        load_stuff(path)
    text = str(info.value)
    assert f"Signal('user_enter', ['name']) at {__file__}:" in text
    assert f"Signal('user_enter', []) at {path}: signals[0] ('user_enter')" in text


async def test_private_catalogs_keep_two_programs_apart() -> None:
    with private_catalog():
        Signal("report", ["a"])
        first = SignalBus.from_url("memory://first")
    with private_catalog():
        Signal("report", ["b"])
        second = SignalBus.from_url("memory://second")
    assert first.report.signal.providing_args == ("a",)
    assert second.report.signal.providing_args == ("b",)
    with pytest.raises(UnknownNameError):
        _ = SignalBus.from_url("memory://third").report


class Worker(MicroAgent):
    @consumer(Queue("work"))
    async def work(self, n: int) -> None:
        self.settings["done"].append(n)


async def test_inside_an_agent_broker_send_takes_a_queue_name() -> None:
    broker = QueueBroker.from_url("memory://inside")
    agent = Worker(broker=broker, settings={"done": []})

    async with agent:
        await agent.broker.send("work", {"n": 1})
        await agent.broker.send(Queue("work"), {"n": 2})
        await eventually(lambda: sorted(agent.settings["done"]) == [1, 2], 5)
    await broker.close()
