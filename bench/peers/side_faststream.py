"""FastStream's side of a cell (bench/peers/.venv; FastStream 0.7).

Queue settings (handlers take the decoded JSON as ``body: dict``; ack policy is FastStream's
default, REJECT_ON_ERROR: ack after the handler returned, where the transport has acks):

- redis ``default``: a Redis list (``subscriber(list=...)``, ``publish(list=...)``): RPUSH and
  LPOP, no acknowledgement at all; ``closest``: a Redis stream with a consumer group
  (``StreamSub(name, group=, consumer=)``, ``publish(stream=...)``): XADD, XREADGROUP, XACK
  after the handler.
- amqp ``default``: ``subscriber(queue)`` (FastStream declares it durable), ``publish(queue=)``
  with publisher confirms (FastStream's default channel) but transient messages; ``closest``:
  the same with ``persist=True`` (persistent messages).
- nats ``default``: a JetStream push subscriber (``stream=JStream(...)``), ephemeral consumer,
  core ``publish(subject)`` (no publish acknowledgement); ``closest``: a durable consumer
  pulled in batches of 64 (``durable=``, ``pull_sub=PullSub(batch_size=64)``, as FastStream's
  warning about durable push consumers recommends) and ``publish(subject, stream=...)``, which
  waits for the PubAck.

Brokers are built with their defaults (``RedisBroker(url)`` ...): FastStream's logger is on.
Signals: Redis PUBLISH to a channel, an AMQP fanout exchange (auto-delete queue per
subscriber; ``default`` publishes with FastStream's default publisher confirms, ``closest``
without them, ``default_channel=Channel(publisher_confirms=False)``, at most once like
microhive's signals), core NATS subjects. Calls: ``await broker.request(...)`` to a subscriber that
returns the answer.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from harness import Cell


def _broker(cell: Cell) -> Any:
    if cell.engine == "redis":
        from faststream.redis import RedisBroker

        return RedisBroker(cell.url)
    if cell.engine == "amqp":
        from faststream.rabbit import Channel, RabbitBroker

        if cell.work == "signal" and cell.setting == "closest":  # at most once, as ours
            return RabbitBroker(cell.url, default_channel=Channel(publisher_confirms=False))
        return RabbitBroker(cell.url)
    from faststream.nats import NatsBroker

    return NatsBroker(cell.url)


def _subscriber(cell: Cell, broker: Any, name: str) -> Any:
    """The decorator for the consumer side of this cell."""
    closest = cell.setting == "closest"
    if cell.engine == "redis":
        from faststream.redis import StreamSub

        if cell.work != "queue":
            return broker.subscriber(name)
        if closest:
            return broker.subscriber(stream=StreamSub(name, group="bench", consumer="c1"))
        return broker.subscriber(list=name)
    if cell.engine == "amqp":
        from faststream.rabbit import ExchangeType, RabbitExchange, RabbitQueue

        if cell.work == "signal":
            return broker.subscriber(
                RabbitQueue(f"{name}.sub", durable=False, auto_delete=True),
                RabbitExchange(name, type=ExchangeType.FANOUT, auto_delete=True),
            )
        return broker.subscriber(RabbitQueue(name, durable=True))
    from faststream.nats import JStream, PullSub

    if cell.work != "queue":
        return broker.subscriber(name)
    stream = JStream(f"{cell.token}_work", subjects=[name])
    if closest:
        pull = PullSub(batch_size=64)
        return broker.subscriber(name, stream=stream, durable="bench", pull_sub=pull)
    return broker.subscriber(name, stream=stream)


def _publish(cell: Cell, broker: Any, name: str) -> Any:
    closest = cell.setting == "closest"
    if cell.engine == "redis":
        if cell.work != "queue":
            return lambda body: broker.publish(body, channel=name)
        if closest:
            return lambda body: broker.publish(body, stream=name)
        return lambda body: broker.publish(body, list=name)
    if cell.engine == "amqp":
        if cell.work == "signal":
            return lambda body: broker.publish(body, exchange=name)
        return lambda body: broker.publish(body, queue=name, persist=closest)
    if cell.work == "queue" and closest:
        return lambda body: broker.publish(body, name, stream=f"{cell.token}_work")
    return lambda body: broker.publish(body, name)


def _name(cell: Cell) -> str:
    return f"{cell.token}.{cell.work}"


async def consumer_side(cell: Cell) -> None:
    broker = _broker(cell)
    counter = harness.Counter(cell.count)
    subscriber = _subscriber(cell, broker, _name(cell))
    if cell.work == "call":

        @subscriber
        async def ask(body: dict[str, Any]) -> int:
            return int(body["n"]) + 1

    else:

        @subscriber
        async def handle(body: dict[str, Any]) -> None:
            counter.hit()

    async with broker:
        await broker.start()
        harness.ready()
        if cell.work == "call":
            await harness.forever()
        elif cell.work == "signal":
            await harness.until_quiet(counter)
        else:
            assert counter.done is not None
            await counter.done.wait()
    harness.result(end=counter.last, count=counter.count)


async def producer_side(cell: Cell) -> None:
    broker = _broker(cell)
    async with broker:
        await broker.start()
        if cell.work == "call":
            name = _name(cell)

            async def call(i: int) -> Any:
                if cell.engine == "amqp":
                    answer = await broker.request({"n": i}, queue=name, timeout=5)
                elif cell.engine == "redis":
                    answer = await broker.request({"n": i}, channel=name, timeout=5)
                else:
                    answer = await broker.request({"n": i}, name, timeout=5)
                return await answer.decode()

            harness.result(times=await harness.timed_calls(cell.count, call))
            return
        publish = _publish(cell, broker, _name(cell))
        start = await harness.lanes(cell.count, lambda i: publish(harness.payload(i)))
    harness.produced(start)


def main() -> None:
    cell = harness.cell_from_argv()
    side = consumer_side if cell.role == "consumer" else producer_side
    asyncio.run(side(cell))


if __name__ == "__main__":
    main()
