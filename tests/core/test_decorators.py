"""Decorator arguments, handler signatures at class creation, inheritance, construction."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import BaseModel

from microhive import (
    Backoff,
    ConfigurationError,
    MicroAgent,
    Queue,
    Signal,
    consumer,
    cron,
    on,
    periodic,
    receiver,
)
from microhive.agent.decorators import specs_of
from microhive.agent.specs import ConsumerSpec, HookSpec, PeriodicSpec, ReceiverSpec
from microhive.testing import run_agents
from microhive.transports.memory import MemoryBroker, MemoryBus

from .helpers import eventually

PING = Signal("ping", ["n"])
PAIR = Signal("pair", ["a", "b"])
JOBS = Queue("jobs")


class Point(BaseModel):
    x: int
    y: int = 0


POINT = Signal("point", schema=Point)


# -- decorator arguments -----------------------------------------------------------------


def test_decorators_attach_a_spec_and_return_the_function() -> None:
    async def handler(self: Any, n: int) -> None: ...

    assert receiver(PING, timeout=5)(handler) is handler
    assert specs_of(handler) == (ReceiverSpec((PING,), 5.0),)
    assert consumer(JOBS)(handler) is handler
    assert len(specs_of(handler)) == 2, "specs stack"

    def hook(self: Any) -> None: ...

    assert on("pre_start")(hook) is hook
    assert specs_of(hook) == (HookSpec("pre_start"),)


@pytest.mark.parametrize("signals", [(), ("ping",), (PING, "pair"), (JOBS,)])
def test_receiver_needs_signal_declarations(signals: tuple[Any, ...]) -> None:
    with pytest.raises(ConfigurationError, match="@receiver needs one or more Signal"):
        receiver(*signals)


BAD_TIMEOUTS = [0, -1, math.nan, math.inf, "5", [1]]


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS)
def test_bad_timeouts(timeout: Any) -> None:
    for make, where in (
        (lambda: receiver(PING, timeout=timeout), "@receiver"),
        (lambda: consumer(JOBS, timeout=timeout), "@consumer('jobs')"),
        (lambda: periodic(1, timeout=timeout), "@periodic"),
        (lambda: cron("* * * * *", timeout=timeout), "cron '* * * * *'"),
    ):
        with pytest.raises(ConfigurationError) as info:
            make()
        assert str(info.value) == (f"{where}: timeout must be a positive number of seconds or None")


def test_no_timeout_is_allowed() -> None:
    async def handler(self: Any, n: int) -> None: ...

    receiver(PING, timeout=None)(handler)
    assert specs_of(handler)[0].timeout is None  # type: ignore[union-attr]


def test_consumer_defaults() -> None:
    async def handler(self: Any) -> None: ...

    consumer(JOBS)(handler)
    (spec,) = specs_of(handler)
    assert spec == ConsumerSpec(JOBS, 60.0, 1, 3, Backoff(initial=1.0), True, False)


def test_consumer_backoff_number_or_instance() -> None:
    async def first(self: Any) -> None: ...

    async def second(self: Any) -> None: ...

    consumer(JOBS, backoff=0.25)(first)
    custom = Backoff(initial=0.1, factor=3, maximum=5, jitter=0)
    consumer(JOBS, backoff=custom)(second)
    assert specs_of(first)[0].backoff == Backoff(initial=0.25)  # type: ignore[union-attr]
    assert specs_of(second)[0].backoff is custom  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"concurrency": 0}, "concurrency must be >= 1"),
        ({"concurrency": -2}, "concurrency must be >= 1"),
        ({"concurrency": 1.5}, "concurrency must be >= 1"),
        ({"concurrency": "4"}, "concurrency must be >= 1"),
        ({"retries": -1}, "retries must be >= 0"),
        ({"retries": 0.5}, "retries must be >= 0"),
        ({"retries": None}, "retries must be >= 0"),
    ],
)
def test_bad_consumer_arguments(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        consumer(JOBS, **kwargs)
    assert str(info.value) == f"@consumer('jobs'): {words}"


def test_consumer_needs_a_queue_declaration() -> None:
    with pytest.raises(ConfigurationError, match="@consumer needs a Queue declaration"):
        consumer("jobs")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="@consumer needs a Queue declaration"):
        consumer(PING)  # type: ignore[arg-type]


def test_zero_retries_is_allowed() -> None:
    async def handler(self: Any) -> None: ...

    consumer(JOBS, retries=0)(handler)
    assert specs_of(handler)[0].retries == 0  # type: ignore[union-attr]


def test_negative_backoff_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="@consumer\\('jobs'\\)"):
        consumer(JOBS, backoff=-1)


@pytest.mark.parametrize("backoff", ["1", None, [1.0]])
def test_backoff_of_the_wrong_type_is_refused(backoff: Any) -> None:
    with pytest.raises(ConfigurationError):
        consumer(JOBS, backoff=backoff)


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        ((0,), {}, "period must be a number >= 0.001"),
        ((-1,), {}, "period must be a number >= 0.001"),
        ((0.0001,), {}, "period must be a number >= 0.001"),
        ((math.nan,), {}, "period must be a number >= 0.001"),
        ((math.inf,), {}, "period must be a number >= 0.001"),
        (("1",), {}, "period must be a number >= 0.001"),
        ((1,), {"start_after": -1}, "start_after must be a number >= 0"),
        ((1,), {"start_after": math.inf}, "start_after must be a number >= 0"),
        ((1,), {"jitter": -0.1}, "jitter must be a number >= 0"),
        ((1,), {"jitter": math.nan}, "jitter must be a number >= 0"),
    ],
)
def test_bad_periodic_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        periodic(*args, **kwargs)
    assert str(info.value) == f"@periodic: {words}"


def test_periodic_spec() -> None:
    async def tick(self: Any) -> None: ...

    periodic(2, timeout=1, start_after=3, jitter=0.5)(tick)
    assert specs_of(tick) == (PeriodicSpec(2.0, 1.0, 3.0, 0.5),)


@pytest.mark.parametrize("event", ["start", "", "errors", "pre-start", "Error", None, 1])
def test_unknown_hook_event(event: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        on(event)
    text = str(info.value)
    assert f"@on({event!r}): unknown event" in text
    assert "pre_start, post_start, pre_stop, post_stop, error" in text


@pytest.mark.parametrize(
    "decorate",
    [
        receiver(PING),
        consumer(JOBS),
        periodic(1),
        cron("@daily"),
    ],
)
def test_handlers_must_be_async(decorate: Any) -> None:
    def handler(self: Any, n: int = 0) -> None: ...

    async def generator(self: Any, n: int = 0) -> Any:
        yield n

    with pytest.raises(ConfigurationError) as info:
        decorate(handler)
    assert "handler: a handler must be 'async def'" in str(info.value)
    with pytest.raises(ConfigurationError, match="must be 'async def'"):
        decorate(generator)
    assert specs_of(handler) == ()


def test_hooks_may_be_sync_or_async() -> None:
    def sync_hook(self: Any) -> None: ...

    async def async_hook(self: Any) -> None: ...

    assert specs_of(on("post_stop")(sync_hook)) == (HookSpec("post_stop"),)
    assert specs_of(on("error_anything")(async_hook)) == (HookSpec("error_anything"),)


# -- handler signatures, checked when the class is created -------------------------------


def test_receiver_must_accept_the_signal_arguments() -> None:
    with pytest.raises(ConfigurationError) as info:

        class Agent(MicroAgent):
            @receiver(PAIR)
            async def on_pair(self, a: int) -> None: ...

    assert str(info.value) == (
        "test_receiver_must_accept_the_signal_arguments.<locals>.Agent.on_pair: receives "
        "'pair' but does not accept its arguments ['b'] (add them or **kwargs)"
    )


def test_receiver_arguments_of_every_signal_are_checked() -> None:
    with pytest.raises(ConfigurationError, match=r"receives 'pair'.*\['a', 'b'\]"):

        class Agent(MicroAgent):
            @receiver(PING, PAIR)
            async def both(self, n: int) -> None: ...


def test_receiver_with_kwargs_or_defaults_is_accepted() -> None:
    class Agent(MicroAgent):
        @receiver(PING, PAIR)
        async def anything(self, **kwargs: Any) -> None: ...

        @receiver(PAIR)
        async def pair(self, a: int, b: int = 0, signal: Any = None, sender: str = "") -> None: ...

        @receiver(POINT)
        async def point(self, x: int, y: int) -> None: ...

    assert [h.name for h in Agent.handlers.receivers] == ["anything", "pair", "point"]
    assert Agent.handlers.signals == (PING, PAIR, POINT)


def test_receiver_for_a_schema_signal_must_accept_its_fields() -> None:
    with pytest.raises(ConfigurationError, match=r"receives 'point'.*\['y'\]"):

        class Agent(MicroAgent):
            @receiver(POINT)
            async def point(self, x: int) -> None: ...


def test_receiver_with_a_required_parameter_no_signal_provides_is_refused() -> None:
    with pytest.raises(ConfigurationError):

        class Agent(MicroAgent):
            @receiver(PING)
            async def on_ping(self, n: int, user: str) -> None: ...


def test_scheduled_handlers_take_no_arguments() -> None:
    with pytest.raises(ConfigurationError, match=r"Agent.tick: a scheduled handler takes no"):

        class Agent(MicroAgent):
            @periodic(1)
            async def tick(self, count: int) -> None: ...

    with pytest.raises(ConfigurationError, match=r"Other.nightly: a scheduled handler"):

        class Other(MicroAgent):
            @cron("@daily")
            async def nightly(self, *, when: str) -> None: ...

    class Fine(MicroAgent):
        @periodic(1)
        async def tick(self, count: int = 0, *args: Any, **kwargs: Any) -> None: ...

    assert [h.name for h in Fine.handlers.schedules] == ["tick"]


def test_error_hook_must_name_a_handler() -> None:
    with pytest.raises(ConfigurationError) as info:

        class Agent(MicroAgent):
            @consumer(JOBS)
            async def job(self) -> None: ...

            @periodic(1)
            async def tick(self) -> None: ...

            @on("error_jb")
            def typo(self) -> None: ...

    assert "Agent.typo: @on('error_jb') names no handler (handlers: job, tick)" in str(info.value)

    with pytest.raises(ConfigurationError, match=r"\(handlers: none\)"):

        class Empty(MicroAgent):
            @on("error_x")
            def hook(self) -> None: ...


def test_handlers_are_grouped_in_definition_order() -> None:
    class Agent(MicroAgent):
        @on("post_start")
        def second_hook(self) -> None: ...

        @receiver(PING)
        async def r(self, n: int) -> None: ...

        @periodic(1)
        async def p(self) -> None: ...

        @consumer(JOBS)
        async def c(self) -> None: ...

        @cron("@hourly")
        async def k(self) -> None: ...

        @on("pre_start")
        def first_hook(self) -> None: ...

    handlers = Agent.handlers
    assert [h.name for h in handlers.receivers] == ["r"]
    assert [h.name for h in handlers.consumers] == ["c"]
    assert [h.name for h in handlers.schedules] == ["p", "k"]
    assert [h.name for h in handlers.hooks] == ["second_hook", "first_hook"]
    assert [h.name for h in handlers.hooks_for("pre_start")] == ["first_hook"]
    assert MicroAgent.handlers.receivers == ()


# -- inheritance -------------------------------------------------------------------------


class Base(MicroAgent):
    @receiver(PING)
    async def on_ping(self, n: int) -> None:
        self.settings["seen"].append(("base", n))

    @consumer(JOBS)
    async def job(self, n: int) -> None:
        self.settings["seen"].append(("base-job", n))

    @periodic(60)
    async def tick(self) -> None: ...

    @on("pre_start")
    def base_hook(self) -> None:
        self.settings["seen"].append("base_hook")


class Child(Base):
    @receiver(PING)
    async def on_ping(self, n: int) -> None:
        self.settings["seen"].append(("child", n))

    async def tick(self) -> None:
        """Overridden without a decorator: no longer scheduled."""

    @on("pre_start")
    def child_hook(self) -> None:
        self.settings["seen"].append("child_hook")


def test_subclass_inherits_and_overrides_handlers() -> None:
    assert [h.name for h in Child.handlers.receivers] == ["on_ping"]
    assert Child.handlers.receivers[0].function is Child.on_ping
    assert [h.name for h in Child.handlers.consumers] == ["job"]
    assert Child.handlers.schedules == (), "an override without decorator removes the schedule"
    assert [h.name for h in Child.handlers.hooks] == ["base_hook", "child_hook"]
    # the base class keeps its own handlers
    assert Base.handlers.receivers[0].function is Base.on_ping
    assert [h.name for h in Base.handlers.schedules] == ["tick"]


def test_non_callable_override_removes_a_handler() -> None:
    class NoJob(Base):
        job = None  # type: ignore[assignment]

    assert NoJob.handlers.consumers == ()
    assert [h.name for h in NoJob.handlers.receivers] == ["on_ping"]


def test_removing_a_handler_that_a_base_error_hook_names_is_an_error() -> None:
    class WithHook(MicroAgent):
        @periodic(60)
        async def tick(self) -> None: ...

        @on("error_tick")
        def failed(self) -> None: ...

    with pytest.raises(ConfigurationError, match="@on\\('error_tick'\\) names no handler"):

        class Without(WithHook):
            tick = None  # type: ignore[assignment]


async def test_subclass_runs_the_override_only() -> None:
    seen: list[Any] = []
    async with run_agents(Child, settings={"Child": {"seen": seen}}) as hive:
        await hive.bus.send(PING, "test", n=1)
        await hive.broker.send(JOBS, {"n": 2})
        await eventually(lambda: ("child", 1) in seen and ("base-job", 2) in seen)
        await hive.drain(JOBS)
    assert seen[:2] == ["base_hook", "child_hook"]
    assert ("base", 1) not in seen


# -- construction ------------------------------------------------------------------------


class Receives(MicroAgent):
    @receiver(PING)
    async def first(self, n: int) -> None: ...

    @receiver(PAIR)
    async def second(self, a: int, b: int) -> None: ...


class Consumes(MicroAgent):
    @consumer(JOBS)
    async def job(self) -> None: ...


def test_receivers_need_a_bus() -> None:
    with pytest.raises(ConfigurationError) as info:
        Receives(broker=MemoryBroker())
    assert str(info.value) == "Receives has receivers (first, second) but no bus was given"


def test_consumers_need_a_broker() -> None:
    with pytest.raises(ConfigurationError) as info:
        Consumes(bus=MemoryBus())
    assert str(info.value) == "Consumes has consumers (job) but no broker was given"


async def test_agent_without_transports_says_so_when_used() -> None:
    class Alone(MicroAgent):
        @periodic(60)
        async def tick(self) -> None: ...

    agent = Alone(name="alone")
    assert agent.name == "alone"
    assert agent.instance_id.startswith("alone.")
    with pytest.raises(ConfigurationError, match="alone was created without a bus"):
        _ = agent.bus.transport
    with pytest.raises(ConfigurationError, match="alone was created without a broker"):
        agent.broker.queue(JOBS)


def test_agent_and_bus_catalogs_must_agree() -> None:
    bus = MemoryBus(signals=[Signal("ping", ["other"])])
    with pytest.raises(ConfigurationError, match="conflicting declarations of signal 'ping'"):
        Receives(bus)
