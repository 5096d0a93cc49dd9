"""Metrics count what a hive does, per queue, signal, handler and job, with bounded labels."""

from __future__ import annotations

import asyncio
from typing import Any

import prometheus_client
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from microhive import (
    Backoff,
    CallTimeout,
    MicroAgent,
    Queue,
    QueueBroker,
    Reject,
    RemoteError,
    Signal,
    SignalBus,
    consumer,
    periodic,
    receiver,
)
from microhive.observability.metrics import Metrics
from microhive.testing import eventually
from microhive.transports.memory import MemoryBroker

JOBS = Queue("obs.jobs")
ROWS = Queue("obs.rows")
LOOSE = Queue("obs.loose")
PING = Signal("obs.ping", ["n"])
NOBODY = Signal("obs.nobody", ["n"])


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def reaches(metrics: Metrics, name: str, at_least: float, **labels: str) -> None:
    await eventually(lambda: value(metrics, name, **labels) >= at_least, 30)


class Worker(MicroAgent):
    @consumer(JOBS, retries=1, backoff=Backoff(0.01, jitter=0))
    async def job(self, n: int) -> None:
        if n == 2:
            raise Reject("two is right out")
        if n == 3 and self.settings["tries"].setdefault(n, 0) == 0:
            self.settings["tries"][n] = 1
            raise ValueError("once")
        if n == 4:
            raise ValueError("always")
        self.settings["done"].append(n)

    @consumer(LOOSE, retries=0, dead_letter=False)
    async def loose(self, n: int) -> None:
        raise ValueError("dropped")


async def test_messages_by_outcome(url: str) -> None:
    metrics = Metrics()
    broker = QueueBroker.from_url(url, queues=[JOBS, LOOSE], middleware=[metrics])
    agent = Worker(broker=broker, settings={"tries": {}, "done": []})
    labels = {"agent": "Worker", "handler": "job", "queue": "obs.jobs"}
    async with agent:
        for n in (1, 2, 3, 4):
            await broker.send(JOBS, {"n": n})
        await broker.send(LOOSE, {"n": 5})
        await broker.send(JOBS, {"m": 1})  # does not fit the handler: dead-lettered at once
        await reaches(
            metrics, "microhive_messages_handled_total", 3, **labels, outcome="dead-lettered"
        )
        await reaches(
            metrics,
            "microhive_messages_handled_total",
            1,
            handler="loose",
            agent="Worker",
            queue="obs.loose",
            outcome="dropped",
        )
        await eventually(lambda: sorted(agent.settings["done"]) == [1, 3], 30)
        metrics.watch_agents([agent])
        await metrics.sample()
    handled = {
        outcome: value(metrics, "microhive_messages_handled_total", **labels, outcome=outcome)
        for outcome in ("acked", "retried", "dead-lettered", "dropped")
    }
    assert handled == {"acked": 2, "retried": 2, "dead-lettered": 3, "dropped": 0}
    assert value(metrics, "microhive_messages_received_total", **labels) == 7
    assert value(metrics, "microhive_messages_failed_total", **labels) == 5
    assert value(metrics, "microhive_messages_handler_seconds_count", **labels) == 7
    assert value(metrics, "microhive_messages_sent_total", queue="obs.jobs") == 5
    assert value(metrics, "microhive_messages_sent_total", queue="obs.loose") == 1
    assert value(metrics, "microhive_queue_dead_letters", queue="obs.jobs") == 3
    assert value(metrics, "microhive_queue_dead_letters", queue="obs.loose") == 0
    assert value(metrics, "microhive_queue_length", queue="obs.jobs") == 0
    assert value(metrics, "microhive_queue_sampled_timestamp_seconds") > 0


class Answering(MicroAgent):
    @receiver(PING)
    async def ping(self, n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return n + 1


async def test_signals_and_calls(url: str) -> None:
    metrics = Metrics()
    caller = SignalBus.from_url(url, signals=[PING, NOBODY], middleware=[metrics])
    bus = SignalBus.from_url(url, signals=[PING], middleware=[metrics])  # one Metrics, two buses
    signal = {"agent": "Answering", "handler": "ping", "signal": "obs.ping"}
    async with caller, Answering(bus):
        assert await caller.call(PING, "me", n=1, timeout=10) == 2
        with pytest.raises(RemoteError):
            await caller.call(PING, "me", n=-1, timeout=10)
        with pytest.raises(CallTimeout):
            await caller.call(NOBODY, "me", n=1, timeout=0.05)
        for n in range(3):
            await caller.send(PING, "me", n=n)
        await reaches(metrics, "microhive_signals_received_total", 3, **signal, kind="signal")
        await reaches(
            metrics, "microhive_signals_handled_total", 3, **signal, kind="signal", outcome="ok"
        )
    await bus.close()
    assert value(metrics, "microhive_signals_sent_total", signal="obs.ping", kind="signal") == 3
    assert value(metrics, "microhive_signals_sent_total", signal="obs.ping", kind="call") == 2
    assert value(metrics, "microhive_signals_sent_total", signal="obs.ping", kind="reply") == 2
    assert value(metrics, "microhive_signals_received_total", **signal, kind="call") == 2
    assert (
        value(metrics, "microhive_signals_handled_total", **signal, kind="call", outcome="failed")
        == 1
    )
    assert value(metrics, "microhive_signals_failed_total", **signal, kind="call") == 1
    assert value(metrics, "microhive_call_seconds_count", signal="obs.ping") == 2
    assert value(metrics, "microhive_call_seconds_count", signal="obs.nobody") == 1
    assert (
        value(metrics, "microhive_call_errors_total", signal="obs.ping", error="RemoteError") == 1
    )
    assert (
        value(metrics, "microhive_call_errors_total", signal="obs.nobody", error="CallTimeout") == 1
    )
    text = generate_latest(metrics.registry).decode()
    assert "reply." not in text, "no reply inbox becomes a label"


class Batcher(MicroAgent):
    @consumer(ROWS, batch=10, batch_timeout=0.05)
    async def rows(self, items: list[dict[str, Any]]) -> None:
        self.settings["seen"].extend(items)


async def test_batch_sizes(url: str) -> None:
    metrics = Metrics()
    broker = QueueBroker.from_url(url, queues=[ROWS], middleware=[metrics])
    for n in range(25):  # sent before the consumer starts: batches fill up
        await broker.send(ROWS, {"n": n})
    agent = Batcher(broker=broker, settings={"seen": []})
    labels = {"agent": "Batcher", "handler": "rows", "queue": "obs.rows"}
    async with agent:
        await reaches(metrics, "microhive_messages_handled_total", 25, **labels, outcome="acked")
    await broker.close()
    batches = value(metrics, "microhive_batch_size_count", **labels)
    assert 3 <= batches <= 25
    assert value(metrics, "microhive_batch_size_sum", **labels) == 25
    assert value(metrics, "microhive_messages_received_total", **labels) == 25


class Slow(MicroAgent):
    @periodic(0.01)
    async def tick(self) -> None:
        self.settings["runs"].append(1)
        if len(self.settings["runs"]) == 1:
            raise RuntimeError("the first run fails")
        await asyncio.sleep(0.05)  # longer than the period: the next due runs are skipped


async def test_schedules_by_outcome_and_skipped_runs() -> None:
    metrics = Metrics()
    agent = Slow(middleware=[metrics], settings={"runs": []})
    labels = {"agent": "Slow", "job": "tick"}
    async with agent:
        await reaches(metrics, "microhive_schedule_runs_total", 2, **labels, outcome="ok")
        await reaches(metrics, "microhive_schedule_skipped_total", 1, **labels)
    assert value(metrics, "microhive_schedule_runs_total", **labels, outcome="failed") == 1
    assert value(metrics, "microhive_schedule_failed_total", **labels) == 1
    assert value(metrics, "microhive_schedule_seconds_count", **labels) == len(
        agent.settings["runs"]
    )


async def test_label_values_are_bounded() -> None:
    metrics = Metrics(max_names=2)
    async with QueueBroker.from_url("memory://obs-bounded", middleware=[metrics]) as broker:
        for name in ("a", "b", "c", "d", "c"):
            await broker.queue(name).send({"n": 1})
    families = {
        sample.labels["queue"]: sample.value
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        if family.name == "microhive_messages_sent"
        for sample in family.samples
    }
    assert families == {"a": 1, "b": 1, "_other": 3}


def test_registries_are_private_unless_asked() -> None:
    one, two = Metrics(), Metrics()
    assert one.registry is not two.registry
    shared = Metrics(global_registry=True)
    try:
        assert shared.registry is prometheus_client.REGISTRY
        assert "microhive_messages_sent_total" in generate_latest().decode()
    finally:
        for collector in list(prometheus_client.REGISTRY._collector_to_names):
            if getattr(collector, "metrics", None) is shared:
                prometheus_client.REGISTRY.unregister(collector)


async def test_a_failing_sample_is_counted_not_raised() -> None:
    metrics = Metrics()
    broker = QueueBroker.from_url("redis://127.0.0.1:1/0?connect_timeout=0.2", queues=[JOBS])
    metrics.watch(broker, [JOBS])
    await metrics.sample()
    assert value(metrics, "microhive_queue_sample_failures_total", queue="obs.jobs") == 1
    assert value(metrics, "microhive_queue_length", queue="obs.jobs") == 0


async def test_sampling_stops_when_a_sample_swallowed_the_cancel() -> None:
    """A broker's stats may lose a cancel (nats-py waits through Python 3.11's wait_for,
    which then returns the result): stop_sampling() cancels again until sampling ends."""
    cancels = 0
    asked = asyncio.Event()

    class Swallowing(MemoryBroker):
        async def _stats(self, queue: str) -> Any:
            nonlocal cancels
            asked.set()
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    cancels += 1
                    if cancels > 1:
                        raise  # the first one is lost

    metrics = Metrics()
    broker = Swallowing("memory://obs-swallowing", queues=[JOBS])
    async with broker:
        metrics.watch(broker, [JOBS])
        metrics.start_sampling()
        await asyncio.wait_for(asked.wait(), 30)
        stopping = asyncio.ensure_future(metrics.stop_sampling())
        done, _ = await asyncio.wait({stopping}, timeout=30)  # hang guard, not a time limit
        if not done:  # what it was without cancel_and_wait: stuck on the lost cancel
            stopping.cancel()
        assert stopping in done, "stop_sampling() waits forever on a sampler that lost a cancel"
    assert cancels == 2


def test_handler_series_are_bounded() -> None:
    metrics = Metrics(max_names=1)
    for name in ("a", "b", "c", "b"):
        series = metrics.counter("message", "Agent", "handler", name)
        series.started(1)
        series.ended("acked", 0.001, 1)
    labels = {"agent": "Agent", "handler": "handler"}
    assert value(metrics, "microhive_messages_received_total", **labels, queue="a") == 1
    assert value(metrics, "microhive_messages_received_total", **labels, queue="_other") == 3
    assert len(metrics.handlers) == 2
