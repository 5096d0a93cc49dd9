"""Tracing: one trace follows a post signal → queue → call → queue, in one process and
across two processes, with the messaging semantic conventions' names and attributes."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

from microhive import MicroAgent, QueueBroker, Reject, SignalBus, consumer, periodic
from microhive.envelope import Envelope
from microhive.middleware import Middleware
from microhive.observability.tracing import Tracing, system_of
from microhive.testing import eventually

from ..cli.helpers import Process
from ..processes import ready, stop
from .agents import ASK, DONE, POST, WORK, Back, Front
from .spans import check_shape, from_sdk, read_lines


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


def tracing(exporter: InMemorySpanExporter, system: str = "memory", **options: object) -> Tracing:
    provider = TracerProvider(**options)  # type: ignore[arg-type]
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(system, tracer_provider=provider)


def run_agent(name: str, url: str, spans: Path) -> Process:
    """``microhive run`` of one of the pair, exporting its spans to ``spans``."""
    target = f"tests.observability.agents:{name}"
    return Process(
        "-m", "microhive", "run", target, "--transport", url, "--grace-period", "1",
        "--tracing", f"file:{spans}",
    )  # fmt: skip


async def test_one_trace_in_one_process(exporter: InMemorySpanExporter) -> None:
    middleware = [tracing(exporter)]
    url = f"memory://obs-{secrets.token_hex(4)}"
    bus = SignalBus.from_url(url, signals=[POST, ASK], middleware=middleware)
    broker = QueueBroker.from_url(url, queues=[WORK, DONE], middleware=middleware)
    done: list[int] = []
    async with Front(bus, broker, settings={"done": done}), Back(bus, broker):
        await bus.send(POST, "test", n=21)
        await eventually(lambda: len(exporter.get_finished_spans()) == 9, 30)
    assert done == [42]
    spans = check_shape(from_sdk(exporter.get_finished_spans()))
    work = spans["obs.work process"]["attributes"]
    assert work["messaging.system"] == "memory"
    assert work["messaging.destination.name"] == "obs.work"
    assert work["microhive.attempt"] == 1
    assert work["microhive.outcome"] == "acked"
    ask = spans["obs.ask publish"]["attributes"]
    assert ask["messaging.message.conversation_id"] == ask["messaging.message.id"]
    answer = spans["(temporary) publish"]["attributes"]
    assert answer["messaging.destination.temporary"] is True
    assert answer["messaging.message.conversation_id"] == ask["messaging.message.id"]
    assert spans["obs.ask process"]["attributes"]["microhive.outcome"] == "ok"


async def test_two_processes_share_one_trace(redis_url: str, tmp_path: Path) -> None:
    files = {name: tmp_path / f"{name}.jsonl" for name in ("Front", "Back")}
    processes = {name: run_agent(name, redis_url, files[name]) for name in files}
    exporter = InMemorySpanExporter()
    try:
        for process in processes.values():
            await ready(process)
        async with SignalBus.from_url(
            redis_url, signals=[POST], middleware=[tracing(exporter, "redis")]
        ) as bus:
            await bus.send(POST, "test", n=21)
        await eventually(
            lambda: any(s["name"] == "obs.done process" for s in read_lines(files["Front"])), 30
        )
        for process in processes.values():
            assert await asyncio.to_thread(stop, process) == 0, process.output
    finally:
        for process in processes.values():
            process.popen.kill()
    front, back = read_lines(files["Front"]), read_lines(files["Back"])
    spans = check_shape(from_sdk(exporter.get_finished_spans()) + front + back)
    assert {s["name"] for s in back} == {"obs.work process", "obs.ask publish", "obs.done publish"}
    assert {s["service"] for s in front} == {"Front"}
    assert {s["service"] for s in back} == {"Back"}
    # each process span's parent was published in the other process
    assert spans["obs.work process"]["parent_span_id"] in {s["span_id"] for s in front}
    assert spans["obs.ask process"]["parent_span_id"] in {s["span_id"] for s in back}
    assert spans["obs.done process"]["parent_span_id"] in {s["span_id"] for s in back}
    for span in front + back:
        assert span["attributes"].get("messaging.system", "redis") == "redis"


@pytest.mark.parametrize("ratio", [0, 1e-12], ids=["roots-never-sampled", "sdk-decides-roots"])
async def test_sampled_out_traces_still_propagate(
    exporter: InMemorySpanExporter, ratio: float
) -> None:
    """Nothing is recorded, but the trace id travels (not sampled), so every hop downstream
    with the same sampler agrees; code in a handler sees that trace as current."""
    headers = Headers()
    middleware = [tracing(exporter, sampler=ParentBased(TraceIdRatioBased(ratio))), headers]
    url = f"memory://obs-{secrets.token_hex(4)}"
    bus = SignalBus.from_url(url, signals=[POST, ASK], middleware=middleware)
    broker = QueueBroker.from_url(url, queues=[WORK, DONE], middleware=middleware)
    done: list[int] = []
    async with Front(bus, broker, settings={"done": done}), Back(bus, broker):
        await bus.send(POST, "test", n=1)
        await eventually(lambda: done == [2], 30)
    assert exporter.get_finished_spans() == ()
    assert [name for name, _ in headers.seen] == [
        "obs.post", "obs.work", "obs.ask", "obs.ask", "obs.done"
    ]  # fmt: skip
    parts = [traceparent.split("-") for _, traceparent in headers.seen]
    assert len({trace_id for _, trace_id, _, _ in parts}) == 1, "one trace id throughout"
    assert all(int(flags, 16) & 1 == 0 for *_, flags in parts), "none sampled"

    class Inside(MicroAgent):
        @consumer(WORK)
        async def work(self, n: int) -> None:
            context = trace.get_current_span().get_span_context()
            seen.append((f"{context.trace_id:032x}", context.trace_flags.sampled))
            with trace.get_tracer("user", tracer_provider=provider).start_as_current_span("mine"):
                pass

    seen: list[tuple[str, bool]] = []
    provider = middleware[0].provider
    async with Inside(broker=broker):
        await broker.send(WORK, {"n": 1})
        await eventually(lambda: len(seen) == 1, 30)
    sent = headers.seen[-1][1].split("-")[1]
    assert seen == [(sent, False)], "the handler runs in the sampled-out trace"
    assert exporter.get_finished_spans() == (), "and so do spans it starts"


class Headers(Middleware):
    """What Tracing put on each envelope."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def publishing(self, envelope: Envelope, destination: str) -> None:
        self.seen.append((envelope.name, envelope.headers["traceparent"]))


async def test_failures_are_marked_on_the_span(exporter: InMemorySpanExporter) -> None:
    url = f"memory://obs-{secrets.token_hex(4)}"
    broker = QueueBroker.from_url(url, queues=[WORK], middleware=[tracing(exporter)])

    class Refuser(MicroAgent):
        @consumer(WORK)
        async def work(self, n: int) -> None:
            raise Reject("no")

    async with Refuser(broker=broker):
        await broker.send(WORK, {"n": 1})
        await eventually(lambda: len(exporter.get_finished_spans()) == 2, 30)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    process = spans["obs.work process"]
    assert process.status.status_code.name == "ERROR"
    assert process.attributes is not None
    assert process.attributes["microhive.outcome"] == "dead-lettered"
    assert [event.name for event in process.events] == ["exception"]


async def test_jobs_start_their_own_trace(exporter: InMemorySpanExporter) -> None:
    url = f"memory://obs-{secrets.token_hex(4)}"
    broker = QueueBroker.from_url(url, queues=[WORK], middleware=[tracing(exporter)])

    class Ticker(MicroAgent):
        @periodic(0.01)
        async def tick(self) -> None:
            if not self.settings["sent"]:
                self.settings["sent"].append(1)
                await self.broker.send(WORK, {"n": 1})

    async with Ticker(broker=broker, settings={"sent": []}):
        await eventually(
            lambda: any(s.name == "obs.work publish" for s in exporter.get_finished_spans()), 30
        )
    spans = from_sdk(exporter.get_finished_spans())
    publish = next(s for s in spans if s["name"] == "obs.work publish")
    run = next(s for s in spans if s["span_id"] == publish["parent_span_id"])
    assert run["name"] == "tick run"
    assert run["kind"] == "INTERNAL"
    assert run["parent_span_id"] is None


def test_system_of_urls() -> None:
    assert system_of("redis://127.0.0.1:6379/0") == "redis"
    assert system_of("redis+sentinel://h/m") == "redis"
    assert system_of("amqps://h/") == "rabbitmq"
    assert system_of("kafka://h:9092") == "kafka"
    assert system_of("nats://h:4222") == "nats"
    assert system_of("memory://x") == "memory"


def test_always_off_is_accepted(exporter: InMemorySpanExporter) -> None:
    assert tracing(exporter, sampler=ALWAYS_OFF).system == "memory"


async def test_a_failed_call_marks_its_publish_span(exporter: InMemorySpanExporter) -> None:
    from microhive import RemoteError, receiver

    class Failing(MicroAgent):
        @receiver(ASK)
        async def ask(self, n: int) -> int:
            raise ValueError("no answer for you")

    bus = SignalBus.from_url(
        f"memory://obs-{secrets.token_hex(4)}", signals=[ASK], middleware=[tracing(exporter)]
    )
    async with Failing(bus):
        with pytest.raises(RemoteError):
            await bus.call(ASK, "test", n=1, timeout=10)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"obs.ask publish", "obs.ask process", "(temporary) publish"}
    call = spans["obs.ask publish"]
    assert call.status.status_code.name == "ERROR"
    assert [event.name for event in call.events] == ["exception"]
    assert spans["obs.ask process"].status.status_code.name == "ERROR"
    assert spans["(temporary) publish"].parent is not None
    assert spans["(temporary) publish"].parent.span_id == spans["obs.ask process"].context.span_id
    await bus.close()
