"""microagent's side of a cell (the seed talk's library; bench/peers/.venv, microagent 1.9).

One setting each, microagent's only behaviour:

- redis queue: ``RedisBroker`` (RPUSH; the consumer BLPOPs one message at a time and starts
  a task per message, no acknowledgement, no bound on handlers in flight);
- amqp queue: ``AMQPBroker`` (aiormq): the consumer declares a non-durable queue, messages are
  published transient without publisher confirms, acked after the handler, no prefetch limit;
- redis signals and calls: ``RedisSignalBus`` (PUBLISH / PSUBSCRIBE; ``bus.<signal>.call``
  answers ``{"Agent.handler": value}``). microagent has no AMQP or NATS bus, no NATS broker.

A consumer binds its Redis queue one second after ``start()`` and its pub/sub subscriptions
in background tasks: the side waits for that before it says READY, so the start-up delay is
not counted.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from harness import Cell

BIND_DELAY = 1.5  # RedisBroker.BIND_TIME (1 s) and the bus's background subscriptions


def _parts(cell: Cell) -> tuple[Any, Any, Any, Any]:
    from microagent import Queue, Signal
    from microagent.tools.redis import RedisBroker, RedisSignalBus

    queue = Queue(name=f"{cell.token}_work")
    if cell.work == "queue":
        if cell.engine == "amqp":
            from microagent.tools.amqp import AMQPBroker

            return None, AMQPBroker(cell.url), queue, None
        return None, RedisBroker(cell.url), queue, None
    if cell.work == "signal":
        signal = Signal(name="peers_tick", providing_args=["n", "user", "text", "ok"])
    else:
        signal = Signal(name="peers_ask", providing_args=["n"])
    return RedisSignalBus(cell.url, prefix=cell.token), None, None, signal


async def consumer_side(cell: Cell) -> None:
    from microagent import MicroAgent, consumer, receiver

    bus, broker, queue, signal = _parts(cell)
    counter = harness.Counter(cell.count)

    if cell.work == "queue":

        class Sink(MicroAgent):
            @consumer(queue)
            async def handle(self, **body: Any) -> None:
                counter.hit()

        agent = Sink(broker=broker)
    elif cell.work == "signal":

        class Receiver(MicroAgent):
            @receiver(signal)
            async def tick(self, **body: Any) -> None:
                counter.hit()

        agent = Receiver(bus=bus)
    else:

        class Responder(MicroAgent):
            @receiver(signal)
            async def ask(self, n: int, **extra: Any) -> int:
                return n + 1

        agent = Responder(bus=bus)
    await agent.start()
    await asyncio.sleep(BIND_DELAY)
    harness.ready()
    if cell.work == "call":
        await harness.forever()
    elif cell.work == "signal":
        await harness.until_quiet(counter)
    else:
        assert counter.done is not None
        await counter.done.wait()
    harness.result(end=counter.last, count=counter.count)
    await agent.stop()


async def producer_side(cell: Cell) -> None:
    bus, broker, queue, signal = _parts(cell)
    if cell.work == "queue":
        bound = getattr(broker, queue.name)
        start = await harness.lanes(cell.count, lambda i: bound.send(harness.payload(i)))
        harness.produced(start)
        await broker.close()
        return
    await asyncio.sleep(BIND_DELAY)  # the bus subscribes to its answers in the background
    bound = getattr(bus, signal.name)
    if cell.work == "signal":
        start = await harness.lanes(cell.count, lambda i: bound.send("bench", **harness.payload(i)))
        harness.produced(start)
    else:

        async def call(i: int) -> Any:
            answer = await bound.call("bench", n=i, timeout=5)
            return next(iter(answer.values()), None)

        harness.result(times=await harness.timed_calls(cell.count, call))
    await bus.close()


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    cell = harness.cell_from_argv()
    side = consumer_side if cell.role == "consumer" else producer_side
    asyncio.run(side(cell))


if __name__ == "__main__":
    main()
