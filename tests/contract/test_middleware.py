"""Middleware sees every publish, handler run and call, on every engine, and what it adds to
an envelope's headers at publishing reaches the handler on the other side of the wire."""

from __future__ import annotations

import pytest

from microhive import (
    Backoff,
    MicroAgent,
    Reject,
    RemoteError,
    consumer,
    current_message,
    receiver,
)
from microhive.envelope import Envelope
from microhive.middleware import Handling, Middleware

from .conftest import QUEUES, SIGNALS, Factory
from .helpers import eventually


class Recorder(Middleware):
    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []
        self.started: list[tuple[str, str]] = []
        self.ended: list[tuple[str, str, str, str | None]] = []
        self.calls: list[tuple[str, str | None]] = []

    def publishing(self, envelope: Envelope, destination: str) -> None:
        envelope.headers["x-trace"] = f"trace-{envelope.name}"
        self.published.append((envelope.kind.value, destination))

    def handling(self, event: Handling) -> None:
        self.started.append((event.kind, event.name))

    def handled(self, event: Handling) -> None:
        error = type(event.error).__name__ if event.error is not None else None
        assert event.duration >= 0
        self.ended.append((event.kind, event.name, event.outcome, error))

    def called(self, signal: str, duration: float, error: BaseException | None) -> None:
        self.calls.append((signal, type(error).__name__ if error is not None else None))


class Broken(Middleware):
    def handling(self, event: Handling) -> None:
        raise RuntimeError("a middleware bug must not cost a message")


class Worker(MicroAgent):
    @consumer(QUEUES.jobs, retries=1, backoff=Backoff(0.01, jitter=0))
    async def job(self, n: int) -> None:
        message = current_message()
        assert message is not None
        self.settings["headers"].append(message.headers.get("x-trace"))
        if n == 2:
            raise Reject("two is right out")
        if n == 3 and message.attempt == 1:
            raise ValueError("once")


async def test_consumers_and_publishes_are_observed(factory: Factory) -> None:
    recorder = Recorder()
    broker = await factory.broker(middleware=[recorder, Broken()])
    agent = Worker(broker=broker, settings={"headers": []})
    async with agent:
        for n in (1, 2, 3):
            await broker.jobs.send({"n": n})
        await eventually(lambda: len(recorder.ended) == 4, 30)
    assert recorder.published == [("message", "jobs")] * 3
    assert set(agent.settings["headers"]) == {"trace-jobs"}, "headers cross the wire"
    assert sorted(recorder.ended) == sorted(
        [
            ("message", "jobs", "acked", None),
            ("message", "jobs", "dead-lettered", "Reject"),
            ("message", "jobs", "retried", "ValueError"),
            ("message", "jobs", "acked", None),
        ]
    )
    assert len(recorder.started) == 4


class Answering(MicroAgent):
    @receiver(SIGNALS.ping)
    async def ping(self, n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        self.settings["headers"].append(current_message().headers.get("x-trace"))  # type: ignore[union-attr]
        return n + 1


async def test_receivers_and_calls_are_observed(factory: Factory) -> None:
    recorder = Recorder()
    bus = await factory.bus(middleware=[recorder])
    agent = Answering(bus=bus, settings={"headers": []})
    async with agent:
        assert await bus.ping.call("me", n=1, timeout=10) == 2
        with pytest.raises(RemoteError):
            await bus.ping.call("me", n=-1, timeout=10)
        await bus.ping.send("me", n=5)
        await eventually(lambda: len(recorder.ended) == 3, 30)
    kinds = sorted(recorder.ended)
    assert kinds == [
        ("call", "ping", "failed", "ValueError"),
        ("call", "ping", "ok", None),
        ("signal", "ping", "ok", None),
    ]
    assert recorder.calls == [("ping", None), ("ping", "RemoteError")]
    assert [kind for kind, _ in recorder.published].count("reply") == 2, "answers are sent too"
    assert set(agent.settings["headers"]) == {"trace-ping"}
