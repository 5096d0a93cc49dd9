"""Prometheus metrics for a hive: a :class:`Metrics` middleware and what it samples.

Counting happens in plain Python integers kept per (agent, handler, name) and is turned into
Prometheus families only when the registry is scraped (:class:`prometheus_client.registry.
Collector`). A ``prometheus_client`` Counter takes a lock on every ``inc()`` (0.8 µs here) and
a Histogram's ``observe()`` 1.8 µs: three of those per message would cost more than the
memory transport's whole queue round trip. Every hook runs on the event loop's thread, so the
integers need no lock; a scrape from another thread reads a consistent-enough copy.

Label values are only names the code declared (signals, queues, handlers, agents, jobs) and
fixed words (outcomes, kinds, error classes of microhive); no id, address or reply inbox
ever becomes a label. ``max_names`` bounds each family anyway: past it, new names count under
``"_other"``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import REGISTRY, Collector

from .. import linkevents
from ..envelope import Envelope, Kind
from ..linkevents import LinkEvent
from ..middleware import Middleware
from ..stopping import cancel_and_wait
from .series import CallSeries, Series

if TYPE_CHECKING:
    from ..agent.agent import MicroAgent
    from ..broker import QueueBroker
    from ..declarations import Queue

log = logging.getLogger("microhive.metrics")

OTHER = "_other"
MESSAGE = Kind.MESSAGE  # a module constant: reading an enum member off its class costs more
KNOWN_ERRORS = frozenset(
    {"CallTimeout", "RemoteError", "TransportError", "CapabilityError", "ConfigurationError"}
)


class Metrics(Middleware):
    """Counts what the hive does, for Prometheus; one instance serves a whole process.

    Give it to every bus and broker (``middleware=[metrics]``): agents built on them report
    their handlers through it. ``registry`` is a private :class:`CollectorRegistry` unless
    given (pass ``prometheus_client.REGISTRY``, or ``global_registry=True``, to join the
    process-wide one). :meth:`watch` names brokers and queues whose length and dead letters
    are sampled by :meth:`start_sampling`.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        global_registry: bool = False,
        max_names: int = 500,
    ) -> None:
        self.registry = registry or (REGISTRY if global_registry else CollectorRegistry())
        self.max_names = max_names
        # key (kind, agent, handler, name) -> Series; kind "signal" also holds calls answered
        self.handlers: dict[tuple[str, str, str, str], Series] = {}
        self.sent: dict[Kind, dict[str, int]] = {kind: {} for kind in Kind}
        self._messages = self.sent[Kind.MESSAGE]  # the common case, without hashing an enum
        self.calls: dict[str, CallSeries] = {}
        self.skipped_runs: dict[tuple[str, str], int] = {}
        self.watched: dict[tuple[int, str], tuple[QueueBroker, str]] = {}
        self.lengths: dict[str, float] = {}
        self.dead: dict[str, float] = {}
        self.sample_failures: dict[str, int] = {}
        self.sampled_at = 0.0
        self.links_lost: dict[tuple[str, str], int] = {}  # (engine, role) -> count
        self.reconnects: dict[tuple[str, str], int] = {}
        self._sampler: asyncio.Task[None] | None = None
        self.registry.register(_Exporter(self))

    # -- hooks (the hot path) --------------------------------------------------------

    def publishing(self, envelope: Envelope, destination: str) -> None:
        kind = envelope.kind
        counts = self._messages if kind is MESSAGE else self.sent[kind]
        name = envelope.name
        try:
            counts[name] += 1
        except KeyError:
            key = self._bounded(counts, name)
            counts[key] = counts.get(key, 0) + 1

    def counter(self, kind: str, agent: str, handler: str, name: str) -> Series:
        """The series of one handler and name, bound once: a run costs two method calls
        on plain integers (no event object, no lookup)."""
        if len(self.handlers) >= self.max_names:
            name = OTHER
        key = (kind, agent, handler, name)
        series = self.handlers.get(key)
        if series is None:
            series = self.handlers[key] = Series(batches=kind == "batch")
        return series

    def called(self, signal: str, duration: float, error: BaseException | None) -> None:
        try:
            series = self.calls[signal]
        except KeyError:
            key = self._bounded(self.calls, signal)
            series = self.calls.get(key) or self.calls.setdefault(key, CallSeries())
        series.latency.observe(duration)
        if error is not None:
            kind = type(error).__name__
            kind = kind if kind in KNOWN_ERRORS else "other"
            series.errors[kind] = series.errors.get(kind, 0) + 1

    def skipped(self, agent: str, handler: str, runs: int) -> None:
        key = (agent, handler)
        self.skipped_runs[key] = self.skipped_runs.get(key, 0) + runs

    def linked(self, event: LinkEvent) -> None:
        counts = self.reconnects if event.up else self.links_lost
        key = (event.engine, event.role)
        counts[key] = counts.get(key, 0) + 1

    def _bounded(self, family: dict[str, Any], name: str) -> str:
        return name if len(family) < self.max_names else OTHER

    # -- sampled gauges ---------------------------------------------------------------

    def watch(self, broker: QueueBroker, queues: Iterable[Queue | str]) -> None:
        """Sample the length and dead letters of ``queues`` on ``broker``."""
        for queue in queues:
            name = queue if isinstance(queue, str) else queue.name
            self.watched[id(broker), name] = (broker, name)

    def watch_agents(self, agents: Iterable[MicroAgent]) -> None:
        """Sample the queues the agents' consumers read, on each agent's broker."""
        from ..agent.specs import ConsumerSpec

        for agent in agents:
            broker = agent._broker
            if broker is None:
                continue
            specs = [h.spec for h in type(agent).handlers.consumers]
            self.watch(broker, [s.queue for s in specs if isinstance(s, ConsumerSpec)])

    async def sample(self, dead_letter_limit: int = 1000) -> None:
        """Ask every watched broker once (``broker.stats(queue)``); what a scrape exports
        until the next sample. ``dead_letter_limit`` is no longer used: every engine counts
        its dead letters now."""
        for broker, queue in list(self.watched.values()):
            try:
                stats = await broker.stats(queue)
            except Exception as exc:
                self.sample_failures[queue] = self.sample_failures.get(queue, 0) + 1
                log.warning("could not sample queue %r: %s", queue, type(exc).__name__)
                continue
            self.lengths[queue] = float(stats.length)
            if stats.dead_letters is not None:
                self.dead[queue] = float(stats.dead_letters)
        self.sampled_at = time.time()

    def start_sampling(self, every: float = 5.0) -> None:
        """Sample in a background task every ``every`` seconds (a scrape is synchronous and
        cannot wait on a broker: it exports the last sample)."""
        if self._sampler is None:
            self._sampler = asyncio.get_running_loop().create_task(self._sample_forever(every))

    async def stop_sampling(self) -> None:
        # cancelled again until it ends: a broker's stats may swallow the first cancel
        # (nats-py waits through Python 3.11's wait_for), see microhive.stopping
        await cancel_and_wait(self._sampler)
        self._sampler = None

    async def _sample_forever(self, every: float) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(every)


class _Exporter(Collector):
    """Turns a :class:`Metrics`' integers into Prometheus families at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        yield from self._handlers(m)
        sent = CounterMetricFamily(
            "microhive_signals_sent",
            "Signals, calls and replies published",
            labels=["signal", "kind"],
        )
        for kind in (Kind.SIGNAL, Kind.CALL, Kind.REPLY):
            for name, count in list(m.sent[kind].items()):
                sent.add_metric([name, kind.value], count)
        yield sent
        messages = CounterMetricFamily(
            "microhive_messages_sent", "Queue messages published", labels=["queue"]
        )
        for name, count in list(m.sent[Kind.MESSAGE].items()):
            messages.add_metric([name], count)
        yield messages
        latency = HistogramMetricFamily(
            "microhive_call_seconds", "Calls made: time to the answer", labels=["signal"]
        )
        errors = CounterMetricFamily(
            "microhive_call_errors", "Calls made that failed", labels=["signal", "error"]
        )
        for signal, series in list(m.calls.items()):
            buckets, total = series.latency.exported()
            latency.add_metric([signal], buckets, total)
            for error, count in list(series.errors.items()):
                errors.add_metric([signal, error], count)
        yield latency
        yield errors
        skipped = CounterMetricFamily(
            "microhive_schedule_skipped",
            "Scheduled runs skipped (overran)",
            labels=["agent", "job"],
        )
        for (agent, job), count in list(m.skipped_runs.items()):
            skipped.add_metric([agent, job], count)
        yield skipped
        yield from self._queues(m)
        yield from _links(m)

    def _handlers(self, m: Metrics) -> Iterator[Metric]:
        families = {kind: _family(kind) for kind in ("signal", "message", "schedule")}
        batch_sizes = HistogramMetricFamily(
            "microhive_batch_size", "Messages per batch", labels=["agent", "handler", "queue"]
        )
        for (kind, agent, handler, name), series in list(m.handlers.items()):
            if kind in ("signal", "call"):
                group, values = families["signal"], [agent, handler, name, kind]
            elif kind == "schedule":
                group, values = families["schedule"], [agent, name]
            else:
                group, values = families["message"], [agent, handler, name]
            if series.batch is not None:
                buckets, total = series.batch.exported()
                batch_sizes.add_metric([agent, handler, name], buckets, total)
            if group.received is not None:
                group.received.add_metric(values, series.received)
            for outcome, count in list(series.outcomes.items()):
                group.outcome.add_metric([*values, outcome], count)
            group.failed.add_metric(values, series.failed)
            buckets, total = series.duration.exported()
            group.duration.add_metric(values, buckets, total)
        for group in families.values():
            yield from group.families()
        yield batch_sizes

    def _queues(self, m: Metrics) -> Iterator[Metric]:
        length = GaugeMetricFamily(
            "microhive_queue_length", "Messages not yet acknowledged (sampled)", labels=["queue"]
        )
        dead = GaugeMetricFamily(
            "microhive_queue_dead_letters",
            "Messages in the dead letters (sampled)",
            labels=["queue"],
        )
        for queue, value in list(m.lengths.items()):
            length.add_metric([queue], value)
        for queue, value in list(m.dead.items()):
            dead.add_metric([queue], value)
        failures = CounterMetricFamily(
            "microhive_queue_sample_failures", "Samples that failed", labels=["queue"]
        )
        for queue, count in list(m.sample_failures.items()):
            failures.add_metric([queue], count)
        sampled = GaugeMetricFamily(
            "microhive_queue_sampled_timestamp_seconds", "When the queues were last sampled"
        )
        sampled.add_metric([], m.sampled_at)
        yield length
        yield dead
        yield failures
        yield sampled


@dataclass(slots=True)
class _Group:
    """The families of one kind of handler: signal receivers, queue consumers or jobs."""

    outcome: CounterMetricFamily
    failed: CounterMetricFamily
    duration: HistogramMetricFamily
    received: CounterMetricFamily | None = None

    def families(self) -> list[Metric]:
        found = [self.received, self.outcome, self.failed, self.duration]
        return [family for family in found if family is not None]


def _family(kind: str) -> _Group:
    if kind == "schedule":
        labels = ["agent", "job"]
        return _Group(
            outcome=CounterMetricFamily(
                "microhive_schedule_runs",
                "Scheduled runs ended, by outcome",
                labels=[*labels, "outcome"],
            ),
            failed=CounterMetricFamily(
                "microhive_schedule_failed",
                "Scheduled runs that raised or timed out",
                labels=labels,
            ),
            duration=HistogramMetricFamily(
                "microhive_schedule_seconds", "Scheduled run time", labels=labels
            ),
        )
    what, labels = (
        ("signals", ["agent", "handler", "signal", "kind"])
        if kind == "signal"
        else ("messages", ["agent", "handler", "queue"])
    )
    return _Group(
        received=CounterMetricFamily(
            f"microhive_{what}_received", f"{what.title()} given to a handler", labels=labels
        ),
        outcome=CounterMetricFamily(
            f"microhive_{what}_handled",
            "Handler runs ended, by outcome",
            labels=[*labels, "outcome"],
        ),
        failed=CounterMetricFamily(
            f"microhive_{what}_failed",
            "Handler runs that raised, timed out or got bad input",
            labels=labels,
        ),
        duration=HistogramMetricFamily(
            f"microhive_{what}_handler_seconds", "Handler run time", labels=labels
        ),
    )


def _links(m: Metrics) -> Iterator[Metric]:
    labels = ["engine", "role"]
    lost = CounterMetricFamily(
        "microhive_link_lost", "Connections to an engine lost", labels=labels
    )
    for key, count in list(m.links_lost.items()):
        lost.add_metric(list(key), count)
    back = CounterMetricFamily(
        "microhive_reconnects", "Connections to an engine restored after a loss", labels=labels
    )
    for key, count in list(m.reconnects.items()):
        back.add_metric(list(key), count)
    down = GaugeMetricFamily("microhive_links_down", "Connections lost right now", labels=labels)
    now: dict[tuple[str, str], int] = {}
    for event in linkevents.down():
        now[event.engine, event.role] = now.get((event.engine, event.role), 0) + 1
    for key in {*m.links_lost, *now}:
        down.add_metric(list(key), now.get(key, 0))
    yield lost
    yield back
    yield down
