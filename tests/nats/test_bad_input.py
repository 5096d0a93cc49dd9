"""Bad input and bugs on the way in never deafen a connection (issue 10).

microhive handles a message inside nats-py's read loop; anything raised there would end the
loop, and the connection would hear nothing (publish acknowledgements included) until a
reconnect. These tests send what used to do that, and put a bug on that path on purpose.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest

from microhive import MicroAgent, QueueBroker, SignalBus, consumer, receiver
from microhive.codecs import Codec
from microhive.envelope import Envelope
from microhive.testing import eventually
from microhive.transports.nats import internals

from .. import engines
from ..fault_agents import JOBS, PING

DEEP = b'{"kind":"message","name":"jobs","payload":' + b"[" * 5000 + b"]" * 5000 + b"}"
NOT_UTF8 = b'{"kind":"message","name":"jobs","payload":"\xff\xfe\xfa"}'
EMPTY = b""


class Worker(MicroAgent):
    @consumer(JOBS, retries=0)
    async def job(self, n: int) -> None:
        self.settings["jobs"].append(n)


class Listener(MicroAgent):
    @receiver(PING)
    async def ping(self, n: int) -> int:
        self.settings["pings"].append(n)
        return n + 1


class Buggy:
    """A codec with a bug: anything but a :class:`DecodeError` for bodies with ``marker``."""

    def __init__(self, codec: Codec, marker: bytes) -> None:
        self.codec = codec
        self.marker = marker
        self.content_type = codec.content_type

    def encode(self, envelope: Envelope) -> bytes:
        return self.codec.encode(envelope)

    def decode(self, data: bytes) -> Envelope:
        if self.marker in data:
            raise RuntimeError("a bug on the way in")
        return self.codec.decode(data)

    def encode_value(self, value: Any) -> bytes:
        return self.codec.encode_value(value)

    def decode_value(self, data: bytes) -> Any:
        return self.codec.decode_value(data)


def good(n: int) -> bytes:
    return json.dumps({"v": 1, "kind": "message", "name": "jobs", "payload": {"n": n}}).encode()


@pytest.fixture
async def plain() -> AsyncIterator[Any]:
    client = await nats.connect(engines.require_nats())
    yield client
    await client.close()


async def test_bad_bodies_from_a_plain_client_are_dead_lettered_and_the_link_stays_up(
    nats_url: str, prefix: str, plain: Any
) -> None:
    broker = QueueBroker.from_url(nats_url)
    agent = Worker(broker=broker, settings={"jobs": []})
    js = plain.jetstream()
    async with broker, agent:
        await broker.length(JOBS)  # the stream exists before the plain client publishes
        bad = {50: DEEP, 100: NOT_UTF8, 150: EMPTY}
        for n in range(200):
            if n in bad:
                await js.publish(f"{prefix}.queue.jobs", bad[n])
            await js.publish(f"{prefix}.queue.jobs", good(n))
        await eventually(lambda: len(agent.settings["jobs"]) == 200, timeout=30)
        letters = await eventually(lambda: _dead(broker, 3), timeout=30)
        await broker.send(JOBS, {"n": 200})  # the connection still hears its acknowledgements
        await eventually(lambda: 200 in agent.settings["jobs"], timeout=30)
    assert sorted(agent.settings["jobs"]) == list(range(201))
    assert sorted(letter.raw for letter in letters) == sorted(bad.values())
    for letter in letters:
        assert "undecodable" in letter.reason, letter.reason
        assert letter.envelope is None


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "nats-py-callbacks"])
async def test_a_bug_while_taking_a_message_in_dead_letters_it_and_the_link_stays_up(
    nats_url: str,
    prefix: str,
    plain: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    direct: bool,
) -> None:
    caplog.set_level(logging.ERROR, "microhive")
    if not direct:  # the fallback when nats-py's internals are not the known ones
        monkeypatch.setattr(internals, "client_class", lambda: nats.aio.client.Client)
    broker = QueueBroker.from_url(nats_url)
    broker.codec = Buggy(broker.codec, b"boom")  # past guarded(): a bug, not a DecodeError
    agent = Worker(broker=broker, settings={"jobs": []})
    reader = QueueBroker.from_url(nats_url)  # reads the dead letters without the bug
    js = plain.jetstream()
    async with broker, agent, reader:
        await broker.length(JOBS)
        for n in range(20):
            if n == 10:
                await js.publish(f"{prefix}.queue.jobs", b'{"payload": "boom"}')
            await js.publish(f"{prefix}.queue.jobs", good(n))
        await eventually(lambda: len(agent.settings["jobs"]) == 20, timeout=30)
        [letter] = await eventually(lambda: _dead(reader, 1), timeout=30)
        await broker.send(JOBS, {"n": 20})
        await eventually(lambda: 20 in agent.settings["jobs"], timeout=30)
    assert sorted(agent.settings["jobs"]) == list(range(21))
    assert letter.raw == b'{"payload": "boom"}'
    assert "RuntimeError: a bug on the way in" in letter.reason, letter.reason
    assert f"broker: handling a message on '{prefix}.queue.jobs' failed" in caplog.text
    assert "handed on as bad input" in caplog.text


async def test_a_bug_in_a_signal_or_reply_callback_does_not_deafen_the_bus(
    nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "microhive")
    listening = SignalBus.from_url(nats_url, signals=[PING])
    calling = SignalBus.from_url(nats_url, signals=[PING])
    listening.codec = Buggy(listening.codec, b'"sender":"boom"')  # a signal it cannot take in
    calling.codec = Buggy(calling.codec, b'"value":5}')  # a reply it cannot take in
    agent = Listener(listening, settings={"pings": []})
    async with listening, calling, agent:
        await calling.send(PING, "boom", n=1)  # sender "boom": the listener's bug
        await calling.send(PING, "test", n=2)
        await eventually(lambda: agent.settings["pings"] == [2], timeout=30)
        assert await calling.ping.call("test", n=3, timeout=30) == 4
        # a reply the caller cannot take in: that call times out, the next one is answered
        with pytest.raises(TimeoutError):
            await calling.ping.call("test", n=4, timeout=0.5)
        assert await calling.ping.call("test", n=6, timeout=30) == 7
    assert agent.settings["pings"] == [2, 3, 4, 6]
    assert caplog.text.count("signal bus: handling a message on") == 2, caplog.text
    assert "RuntimeError: a bug on the way in" in caplog.text and "dropped" in caplog.text


async def _dead(broker: QueueBroker, count: int) -> list[Any] | None:
    letters = await broker.dead_letters(JOBS)
    return letters if len(letters) == count else None
