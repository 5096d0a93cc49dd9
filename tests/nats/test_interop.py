"""Working with programs that do not use microhive: plain nats-py on the same subjects and
streams (what the ``nats`` CLI does too, see docs/transports/nats.md)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest

from microhive import MicroAgent, QueueBroker, SignalBus, TransportError, consumer, receiver
from microhive.envelope import new_id
from microhive.testing import eventually

from .. import engines
from ..fault_agents import JOBS, PING


def envelope(kind: str, name: str, payload: Any, **extra: Any) -> bytes:
    """The wire format (docs/wire-format.md), written by hand."""
    document = {
        "v": 1,
        "id": new_id(),
        "kind": kind,
        "name": name,
        "sender": "plain",
        "payload": payload,
        "headers": {},
        "sent_at": time.time(),
        "attempt": 1,
        **extra,
    }
    return json.dumps(document).encode()


class Agent(MicroAgent):
    @consumer(JOBS)
    async def job(self, n: int) -> None:
        self.settings["jobs"].append(n)

    @receiver(PING)
    async def ping(self, n: int) -> int:
        self.settings["pings"].append(n)
        return n + 1


@pytest.fixture
async def plain() -> AsyncIterator[Any]:
    client = await nats.connect(engines.require_nats())
    yield client
    await client.close()


async def test_plain_producer_and_signal_sender_reach_agents(
    nats_url: str, prefix: str, plain: Any
) -> None:
    bus, broker = SignalBus.from_url(nats_url), QueueBroker.from_url(nats_url)
    agent = Agent(bus, broker, settings={"jobs": [], "pings": []})
    async with bus, broker, agent:
        ack = await plain.jetstream().publish(
            f"{prefix}.queue.jobs", envelope("message", "jobs", {"n": 5})
        )
        assert ack.stream == f"{prefix}_queue_jobs"
        await plain.publish(f"{prefix}.signal.ping", envelope("signal", "ping", {"n": 1}))
        await eventually(lambda: agent.settings["jobs"] == [5] and agent.settings["pings"] == [1])
        # a call from a plain client: its own inbox in reply_to
        inbox = f"{prefix}.reply.plain"
        answers = await plain.subscribe(inbox)
        await plain.publish(
            f"{prefix}.signal.ping",
            envelope("call", "ping", {"n": 41}, correlation_id="c1", reply_to=inbox),
        )
        answer = json.loads((await answers.next_msg(timeout=5)).data)
        assert answer["kind"] == "reply" and answer["correlation_id"] == "c1"
        assert answer["payload"] == {"ok": True, "value": 42}


async def test_plain_consumers_read_what_microhive_sends(
    nats_url: str, prefix: str, plain: Any
) -> None:
    broker = QueueBroker.from_url(nats_url, queues=[JOBS])
    async with broker:
        message_id = await broker.jobs.send({"n": 1}, headers={"trace": "t1"})
        stream = f"{prefix}_queue_jobs"
        # an independent reader with a durable of its own gets every message
        pull = await plain.jetstream().pull_subscribe(
            f"{prefix}.queue.jobs", "audit", stream=stream
        )
        [message] = await pull.fetch(1, timeout=5)
        await message.ack()
        document = json.loads(message.data)
        assert document["id"] == message_id and document["payload"] == {"n": 1}
        assert document["headers"] == {"trace": "t1"} and document["kind"] == "message"
        assert await broker.jobs.length() == 1, "microhive's own consumers still have it"


async def test_dead_letters_are_plain_stream_messages_with_headers(
    nats_url: str, prefix: str, plain: Any
) -> None:
    class Failing(MicroAgent):
        @consumer(JOBS, retries=0)
        async def job(self, n: int) -> None:
            raise ValueError("negative")

    broker = QueueBroker.from_url(nats_url)
    async with broker, Failing(broker=broker):
        await broker.send(JOBS, {"n": -1})
        [letter] = await eventually(lambda: broker.dead_letters(JOBS), timeout=10)
    stored = await plain.jetstream().get_msg(f"{prefix}_dead_jobs", subject=f"{prefix}.dead.jobs")
    assert stored.data == letter.raw
    assert stored.headers["Microhive-Queue"] == "jobs"
    assert stored.headers["Microhive-Attempt"] == str(letter.attempt)
    assert "ValueError: negative" in stored.headers["Microhive-Reason"]


async def test_signals_reach_a_plain_subscriber_in_order(
    nats_url: str, prefix: str, plain: Any
) -> None:
    """What the bus writes is plain NATS: a nats-py subscriber reads every signal, in order."""
    seen: list[dict[str, Any]] = []

    async def collect(message: Any) -> None:
        seen.append(json.loads(message.data))

    await plain.subscribe(f"{prefix}.signal.{PING.name}", cb=collect)
    await plain.flush()
    async with SignalBus.from_url(nats_url, signals=[PING]) as bus:
        for n in range(500):
            await bus.send(PING, "sender", n=n)
    await eventually(lambda: len(seen) == 500)
    assert [document["payload"] for document in seen] == [{"n": n} for n in range(500)]
    assert {document["kind"] for document in seen} == {"signal"}


async def test_a_signal_over_the_servers_max_payload_is_refused_and_the_bus_goes_on(
    nats_url: str,
) -> None:
    got: list[int] = []

    class Listener(MicroAgent):
        @receiver(PING)
        async def ping(self, n: Any) -> None:
            got.append(len(n) if isinstance(n, str) else n)

    bus, listening = SignalBus.from_url(nats_url, signals=[PING]), SignalBus.from_url(nats_url)
    async with bus, listening, Listener(listening):
        with pytest.raises(TransportError, match="payload"):
            await bus.send(PING, "sender", n="x" * 1_500_000)  # the server takes 1 MB
        await bus.send(PING, "sender", n=7)
        await eventually(lambda: got == [7])


async def test_a_subscription_is_live_once_subscribe_returns(nats_url: str) -> None:
    """subscribe() returns only once the server has the subscription: a signal published
    right after, from another connection, arrives. (nats-py's flush() writes its PING ahead
    of a SUB still in its pending buffer, so a PING/PONG alone confirmed too early about one
    time in thirty; this would catch that with near certainty.)"""
    async with SignalBus.from_url(nats_url, signals=[PING]) as sender:
        for round_ in range(120):
            async with SignalBus.from_url(nats_url, signals=[PING]) as listener:
                got: list[int] = []
                await listener.subscribe([PING.name], lambda e, add=got.append: add(e.payload["n"]))
                await sender.send(PING, "sender", n=round_)
                await eventually(lambda got=got, n=round_: got == [n], timeout=30)
