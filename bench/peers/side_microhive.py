"""microhive's side of a cell (runs in the project's venv, PYTHONPATH = the checkout).

Settings: ``default`` is ``@consumer(queue)`` as written in the docs (concurrency 1);
``c64`` is ``@consumer(queue, concurrency=64)`` as in the project's own benchmarks. The
guarantee is the same in both (and the only one microhive has): durable queue, persistent
messages, publisher confirms / acknowledged writes, ack after the handler returned.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import harness
from harness import Cell

from microhive import MicroAgent, Queue, QueueBroker, Signal, SignalBus, consumer, receiver

WORK = Queue("peers.work")
TICK = Signal("peers.tick", ["n", "user", "text", "ok"])
ASK = Signal("peers.ask", ["n"])
CONCURRENCY = {"default": 1, "c64": 64}


def _url(cell: Cell) -> str:
    separator = {"redis": ":", "amqp": ".", "nats": ""}[cell.engine]
    return f"{cell.url}?prefix={cell.token}{separator}"


async def consumer_side(cell: Cell) -> None:
    counter = harness.Counter(cell.count)
    if cell.work == "queue":

        class Sink(MicroAgent):
            @consumer(WORK, concurrency=CONCURRENCY[cell.setting])
            async def work(self, n: int, user: str, text: str, ok: bool) -> None:
                counter.hit()

        broker = QueueBroker.from_url(_url(cell), queues=[WORK])
        async with broker, Sink(broker=broker):
            harness.ready()
            assert counter.done is not None
            await counter.done.wait()
        harness.result(end=counter.last, count=counter.count)
    elif cell.work == "signal":

        class Receiver(MicroAgent):
            @receiver(TICK)
            async def tick(self, n: int, user: str, text: str, ok: bool) -> None:
                counter.hit()

        bus = SignalBus.from_url(_url(cell), signals=[TICK])
        async with bus, Receiver(bus):
            harness.ready()
            await harness.until_quiet(counter)
        harness.result(end=counter.last, count=counter.count)
    else:

        class Responder(MicroAgent):
            @receiver(ASK)
            async def ask(self, n: int) -> int:
                return n + 1

        bus = SignalBus.from_url(_url(cell), signals=[ASK])
        async with bus, Responder(bus):
            harness.ready()
            await harness.forever()


async def producer_side(cell: Cell) -> None:
    if cell.work == "queue":
        async with QueueBroker.from_url(_url(cell), queues=[WORK]) as broker:
            start = await harness.lanes(
                cell.count, lambda i: broker.send(WORK, harness.payload(i), sender="bench")
            )
        harness.produced(start)
    elif cell.work == "signal":
        async with SignalBus.from_url(_url(cell), signals=[TICK]) as bus:
            start = await harness.lanes(
                cell.count, lambda i: bus.send(TICK, "bench", **harness.payload(i))
            )
        harness.produced(start)
    else:
        async with SignalBus.from_url(_url(cell), signals=[ASK]) as bus:

            async def call(i: int) -> Any:
                return await bus.call(ASK, "bench", n=i, timeout=5)

            harness.result(times=await harness.timed_calls(cell.count, call))


def main() -> None:
    cell = harness.cell_from_argv()
    side = consumer_side if cell.role == "consumer" else producer_side
    asyncio.run(side(cell))


if __name__ == "__main__":
    main()
