"""The agent runtime: lifecycle and hooks, error hooks, graceful stop, message and log context."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from microhive import (
    Envelope,
    MicroAgent,
    Queue,
    Signal,
    TransportError,
    consumer,
    current_message,
    on,
    periodic,
    receiver,
)
from microhive.logs import log_context
from microhive.transports.memory import MemoryBroker, MemoryBus

from .helpers import eventually

PING = Signal("ping", ["n"])
JOBS = Queue("jobs")


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    bus = MemoryBus("memory://core", signals=[PING])
    await bus.connect()
    yield bus
    await bus.close()


@pytest.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    broker = MemoryBroker("memory://core", queues=[JOBS])
    await broker.connect()
    yield broker
    await broker.close()


# -- lifecycle ---------------------------------------------------------------------------


class Life(MicroAgent):
    """Records hooks and the pings it receives; each hook sends a ping of its own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[Any] = []

    @receiver(PING)
    async def on_ping(self, n: int) -> None:
        self.events.append(("ping", n))

    @on("pre_start")
    async def pre_start(self) -> None:
        self.events.append(("pre_start", self.running))
        await self.bus.ping.send("life", n=0)

    @on("post_start")
    async def post_start(self) -> None:
        self.events.append(("post_start", self.running))
        await self.bus.ping.send("life", n=1)

    @on("pre_stop")
    def pre_stop(self) -> None:
        self.events.append(("pre_stop", self.running))

    @on("pre_stop")
    async def pre_stop_send(self) -> None:
        await self.bus.ping.send("life", n=2)

    @on("post_stop")
    async def post_stop(self) -> None:
        self.events.append(("post_stop", self.running))
        await self.bus.ping.send("life", n=3)


async def test_hook_order_and_binding(bus: MemoryBus) -> None:
    agent = Life(bus)
    assert not agent.running
    await agent.start()
    assert agent.running
    await eventually(lambda: ("ping", 1) in agent.events)
    await agent.stop()
    assert not agent.running
    assert agent.events == [
        ("pre_start", False),  # not bound yet: ping 0 is lost
        ("post_start", True),  # bound: ping 1 arrives
        ("ping", 1),
        ("pre_stop", True),  # still bound: ping 2 arrives and is waited for
        ("ping", 2),
        ("post_stop", False),  # unbound: ping 3 is lost
    ]


async def test_signal_sent_right_after_start_is_received(
    bus: MemoryBus, broker: MemoryBroker
) -> None:
    got: list[Any] = []

    class Quick(MicroAgent):
        @receiver(PING)
        async def on_ping(self, n: int) -> None:
            got.append(("signal", n))

        @consumer(JOBS)
        async def job(self, n: int) -> None:
            got.append(("job", n))

    agent = Quick(bus, broker)
    await agent.start()
    try:
        await bus.send(PING, "test", n=1)
        await broker.send(JOBS, {"n": 2})
        await eventually(lambda: len(got) == 2)
    finally:
        await agent.stop()
    assert sorted(got) == [("job", 2), ("signal", 1)]


async def test_async_with_starts_and_stops(bus: MemoryBus) -> None:
    agent = Life(bus)
    async with agent as entered:
        assert entered is agent
        assert agent.running
    assert not agent.running
    assert agent.events[-1] == ("post_stop", False)


async def test_async_with_stops_on_error(bus: MemoryBus) -> None:
    agent = Life(bus)
    with pytest.raises(RuntimeError, match="inside"):
        async with agent:
            raise RuntimeError("inside")
    assert not agent.running
    assert ("post_stop", False) in agent.events


async def test_second_stop_and_stop_before_start_are_harmless(bus: MemoryBus) -> None:
    agent = Life(bus)
    await agent.stop()
    assert agent.events == [], "stop before start runs no hooks"
    await agent.start()
    await agent.stop()
    count = len(agent.events)
    await agent.stop()
    assert len(agent.events) == count
    assert [e for e in agent.events if e[0] == "post_stop"] == [("post_stop", False)]


async def test_start_twice_is_an_error(bus: MemoryBus) -> None:
    agent = Life(bus)
    async with agent:
        with pytest.raises(RuntimeError, match="already running"):
            await agent.start()


async def test_agent_can_be_restarted(bus: MemoryBus) -> None:
    agent = Life(bus)
    await agent.start()
    await agent.stop()
    agent.events.clear()
    await agent.start()
    try:
        await bus.send(PING, "test", n=7)
        await eventually(lambda: ("ping", 7) in agent.events)
    finally:
        await agent.stop()


async def test_failing_pre_start_leaves_the_agent_stopped(bus: MemoryBus) -> None:
    got: list[int] = []

    class Broken(MicroAgent):
        @receiver(PING)
        async def on_ping(self, n: int) -> None:
            got.append(n)

        @on("pre_start")
        def fail(self) -> None:
            raise RuntimeError("pre_start failed")

    agent = Broken(bus)
    with pytest.raises(RuntimeError, match="pre_start failed"):
        await agent.start()
    assert not agent.running
    await bus.send(PING, "test", n=1)
    await asyncio.sleep(0.02)  # give a (wrong) delivery the time to happen
    assert got == []


async def test_failing_post_start_leaves_the_agent_stopped(bus: MemoryBus) -> None:
    got: list[int] = []

    class Broken(MicroAgent):
        @receiver(PING)
        async def on_ping(self, n: int) -> None:
            got.append(n)

        @on("post_start")
        def fail(self) -> None:
            raise RuntimeError("post_start failed")

    agent = Broken(bus)
    try:
        with pytest.raises(RuntimeError, match="post_start failed"):
            await agent.start()
        await bus.send(PING, "test", n=1)
        await asyncio.sleep(0.02)
        assert not agent.running
        assert got == []
    finally:
        await agent.stop()


class Refusing(MemoryBroker):
    """Refuses to open a consumer of one queue, after a moment (the others open meanwhile)."""

    async def _consume(self, queue: str, *, prefetch: int, name: str) -> Any:
        if queue == "refused":
            await asyncio.sleep(0.01)
            raise TransportError(f"cannot consume {queue!r}")
        return await super()._consume(queue, prefetch=prefetch, name=name)


async def test_a_consumer_that_cannot_open_closes_those_that_did() -> None:
    """Consumers open together; one failing fails the start, and the others, opened
    meanwhile, are closed: nothing keeps reading for an agent that is not running."""

    class Half(MicroAgent):
        @consumer(JOBS, concurrency=2)
        async def job(self) -> None: ...

        @consumer(Queue("refused"))
        async def other(self) -> None: ...

    broker = Refusing("memory://refusing", queues=[JOBS])
    agent = Half(broker=broker)
    try:
        with pytest.raises(TransportError, match="cannot consume 'refused'"):
            await agent.start()
        assert not agent.running
        assert (await broker.stats(JOBS)).consumers == 0
    finally:
        await agent.stop()
        await broker.close()


async def test_failing_pre_stop_still_stops_the_agent(
    bus: MemoryBus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="microhive")
    got: list[int] = []
    stopped: list[bool] = []

    class Broken(MicroAgent):
        @receiver(PING)
        async def on_ping(self, n: int) -> None:
            got.append(n)

        @on("pre_stop")
        def fail(self) -> None:
            raise RuntimeError("pre_stop failed")

        @on("post_stop")
        def done(self) -> None:
            stopped.append(True)

    agent = Broken(bus)
    await agent.start()
    await agent.stop()
    assert not agent.running
    assert stopped == [True]
    await bus.send(PING, "test", n=1)
    await asyncio.sleep(0.02)
    assert got == []
    assert any("pre_stop hook failed" in r.getMessage() for r in caplog.records)


# -- error hooks -------------------------------------------------------------------------


async def test_error_hooks_order_and_arguments(bus: MemoryBus) -> None:
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    class Failing(MicroAgent):
        @receiver(PING)
        async def on_ping(self, n: int) -> None:
            raise ValueError(f"bad {n}")

        @on("error_on_ping")
        def specific(self, exc: BaseException, handler: str, message: Envelope) -> None:
            calls.append(("error_on_ping", (exc,), {"handler": handler, "message": message}))

        @on("error")
        async def general(self, exc: BaseException, **kwargs: Any) -> None:
            calls.append(("error", (exc,), kwargs))

        @on("error")
        def exception_only(self, exc: BaseException) -> None:
            calls.append(("exception_only", (exc,), {}))

        @on("error")
        def keywords_only(self, **kwargs: Any) -> None:
            calls.append(("keywords_only", (), kwargs))

        @on("error")
        def nothing(self) -> None:
            calls.append(("nothing", (), {"current": current_message()}))

    async with Failing(bus):
        await bus.send(PING, "tester", n=5)
        await eventually(lambda: len(calls) == 5)
    assert [c[0] for c in calls] == [
        "error_on_ping",
        "error",
        "exception_only",
        "keywords_only",
        "nothing",
    ]
    exc = calls[0][1][0]
    assert isinstance(exc, ValueError) and str(exc) == "bad 5"
    assert all(c[1] == (exc,) for c in calls[:3])
    message = calls[0][2]["message"]
    assert isinstance(message, Envelope)
    assert (message.name, message.sender, message.payload) == ("ping", "tester", {"n": 5})
    assert calls[0][2] == {"handler": "on_ping", "message": message}
    assert calls[1][2] == {"handler": "on_ping", "message": message}
    assert calls[3][2] == {"handler": "on_ping", "message": message}
    assert calls[4][2] == {"current": message}, "current_message() works in error hooks"


async def test_failing_error_hook_is_logged_and_others_still_run(
    bus: MemoryBus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="microhive")
    calls: list[str] = []

    class Failing(MicroAgent):
        @receiver(PING)
        async def on_ping(self, n: int) -> None:
            raise ValueError("handler")

        @on("error_on_ping")
        def broken_hook(self) -> None:
            raise RuntimeError("hook is broken")

        @on("error")
        def general(self) -> None:
            calls.append("error")

    async with Failing(bus):
        await bus.send(PING, "test", n=1)
        await eventually(lambda: calls)
    records = [r for r in caplog.records if "hook error_on_ping failed" in r.getMessage()]
    assert records
    assert "RuntimeError: hook is broken" in records[0].getMessage()
    assert records[0].levelno == logging.ERROR


async def test_consumer_errors_reach_the_hooks_with_the_message(broker: MemoryBroker) -> None:
    calls: list[tuple[BaseException, str, Envelope]] = []

    class Worker(MicroAgent):
        @consumer(JOBS, retries=0)
        async def job(self, n: int) -> None:
            raise KeyError(n)

        @on("error_job")
        def failed(self, exc: BaseException, handler: str, message: Envelope) -> None:
            calls.append((exc, handler, message))

    async with Worker(broker=broker):
        message_id = await broker.send(JOBS, {"n": 3}, sender="producer")
        await eventually(lambda: calls)
    exc, handler, message = calls[0]
    assert isinstance(exc, KeyError)
    assert handler == "job"
    assert (message.id, message.sender, message.payload) == (message_id, "producer", {"n": 3})


# -- graceful stop -----------------------------------------------------------------------


class Slow(MicroAgent):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state: list[str] = []

    @receiver(PING)
    async def on_ping(self, n: int) -> None:
        self.state.append("started")
        try:
            await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            self.state.append("cancelled")
            raise
        self.state.append("finished")


async def test_stop_lets_an_in_flight_receiver_finish(bus: MemoryBus) -> None:
    agent = Slow(bus, grace_period=5)
    await agent.start()
    await bus.send(PING, "test", n=1)
    await eventually(lambda: agent.state == ["started"])
    await agent.stop()
    assert agent.state == ["started", "finished"]


async def test_stop_cancels_a_receiver_after_the_grace_period(
    bus: MemoryBus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="microhive")
    agent = Slow(bus, grace_period=5)
    await agent.start()
    await bus.send(PING, "test", n=1)
    await eventually(lambda: agent.state == ["started"])
    await agent.stop(grace_period=0.02)
    assert agent.state == ["started", "cancelled"], "stop cancelled the handler, not waited"
    assert any("grace period over" in r.getMessage() for r in caplog.records)


async def test_stop_lets_a_running_scheduled_job_finish() -> None:
    state: list[str] = []

    class Job(MicroAgent):
        @periodic(60)
        async def job(self) -> None:
            state.append("started")
            await asyncio.sleep(0.08)
            state.append("finished")

    agent = Job(grace_period=5)
    await agent.start()
    await eventually(lambda: state == ["started"])
    await agent.stop()
    assert state == ["started", "finished"]


# -- the message and the log context -----------------------------------------------------


async def test_current_message_inside_handlers(bus: MemoryBus, broker: MemoryBroker) -> None:
    seen: dict[str, Any] = {}

    async def helper() -> Envelope | None:
        await asyncio.sleep(0)
        return current_message()

    class Watcher(MicroAgent):
        @receiver(PING)
        async def on_ping(self, n: int) -> None:
            seen["signal"] = current_message()
            seen["helper"] = await helper()
            seen["task"] = await asyncio.create_task(helper())

        @consumer(JOBS)
        async def job(self, n: int) -> None:
            seen["job"] = current_message()

        @periodic(60)
        async def tick(self) -> None:
            seen["tick"] = current_message()

    assert current_message() is None
    async with Watcher(bus, broker):
        await bus.send(PING, "pinger", n=1)
        job_id = await broker.send(JOBS, {"n": 2}, headers={"trace": "t1"}, sender="producer")
        await eventually(lambda: {"signal", "task", "job", "tick"} <= seen.keys())
    assert current_message() is None
    signal = seen["signal"]
    assert (signal.name, signal.sender, signal.payload) == ("ping", "pinger", {"n": 1})
    assert seen["helper"] is signal
    assert seen["task"] is signal, "tasks started by the handler inherit it"
    job = seen["job"]
    assert (job.id, job.sender, job.headers, job.attempt) == (
        job_id,
        "producer",
        {"trace": "t1"},
        1,
    )
    assert seen["tick"] is None


def context_of(record: logging.LogRecord) -> dict[str, str]:
    return dict(record.microhive)  # type: ignore[attr-defined]


async def test_log_records_carry_agent_handler_message_and_sender(
    bus: MemoryBus, broker: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="microhive")
    ids: dict[str, str] = {}

    class Chatty(MicroAgent):
        @consumer(JOBS)
        async def job(self, n: int) -> None:
            self.log.info("job %d", n)

        @receiver(PING)
        async def on_ping(self, n: int) -> None:
            message = current_message()
            assert message is not None
            ids["ping"] = message.id
            self.log.warning("ping %d", n)

        @periodic(60)
        async def tick(self) -> None:
            self.log.info("tick")

    agent = Chatty(bus, broker, name="chatty")
    async with agent:
        ids["job"] = await broker.send(JOBS, {"n": 1}, sender="producer")
        await bus.send(PING, "pinger", n=2)
        await eventually(
            lambda: {"job 1", "ping 2", "tick"} <= {r.getMessage() for r in caplog.records}
        )
        agent.log.info("outside")
    by_text = {r.getMessage(): r for r in caplog.records}

    job = by_text["job 1"]
    assert job.name == "microhive.agent.chatty"
    assert context_of(job) == {
        "agent": "chatty",
        "handler": "job",
        "msg": ids["job"],
        "sender": "producer",
    }
    assert job.context.split() == [  # type: ignore[attr-defined]
        f"{key}={value}" for key, value in context_of(job).items()
    ]
    ping = by_text["ping 2"]
    assert context_of(ping) == {
        "agent": "chatty",
        "handler": "on_ping",
        "msg": ids["ping"],
        "sender": "pinger",
    }
    assert context_of(by_text["tick"]) == {"agent": "chatty", "handler": "tick"}
    assert context_of(by_text["outside"]) == {"agent": "chatty"}
    started = next(r for r in caplog.records if r.getMessage().startswith("started:"))
    assert context_of(started)["agent"] == "chatty"
    assert started.getMessage() == "started: 1 receiver(s), 1 consumer(s), 1 schedule(s)"


async def test_receiver_log_context_does_not_inherit_the_senders(
    bus: MemoryBus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="microhive")

    class Quiet(MicroAgent):
        @receiver(PING)
        async def on_ping(self, n: int) -> None:
            self.log.info("got %d", n)

    async with Quiet(bus):
        with log_context(sender="someone-else", extra="leak"):
            await bus.send(PING, "", n=1)
        await eventually(lambda: any(r.getMessage() == "got 1" for r in caplog.records))
    record = next(r for r in caplog.records if r.getMessage() == "got 1")
    context = context_of(record)
    assert context.get("sender", "") == ""
    assert "extra" not in context
