"""Dead letters as a workflow: list, requeue (elsewhere too), purge, with filters; replay of
one key's messages; declaring queues up front.

A transport that cannot do one of these yet must refuse it with CapabilityError (checked
here before the test skips); the others pass the whole scenario.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from microhive import (
    Backoff,
    CapabilityError,
    DeadLetter,
    MicroAgent,
    Namespace,
    Queue,
    Reject,
    consumer,
)

from .conftest import QUEUES, Factory
from .helpers import eventually


class Strict(MicroAgent):
    @consumer(QUEUES.jobs, retries=0, backoff=Backoff(0.01))
    async def job(self, n: int, bad: str = "") -> None:
        if bad and not self.settings["fixed"]:
            raise Reject(bad)
        self.settings["done"].append(n)


class Other(MicroAgent):
    @consumer(QUEUES.other)
    async def other(self, n: int, bad: str = "") -> None:
        self.settings["done"].append(n)


async def refused(operation: Any) -> bool:
    """Run ``operation``; True (and the test skips) when the transport refuses it clearly."""
    try:
        await operation
    except CapabilityError as exc:
        assert "cannot" in str(exc)
        return True
    return False


async def _dead(broker: Any, count: int) -> Any:
    letters = await broker.jobs.dead.list()
    return letters if len(letters) >= count else None


async def test_requeue_and_purge_with_filters(factory: Factory) -> None:
    broker = await factory.broker()
    agent = Strict(broker=broker, settings={"done": [], "fixed": False})
    async with agent:
        for n in range(6):
            await broker.jobs.send({"n": n, "bad": "too big" if n % 2 else "too small"})
        letters = await eventually(lambda: _dead(broker, 6), 30)
        if await refused(broker.jobs.dead.purge(limit=0)):
            pytest.skip("the transport refuses dead-letter work clearly")
        assert sorted(letter.envelope.payload["n"] for letter in letters) == list(range(6))
        assert await broker.jobs.dead.purge(reason="too small", limit=1) == 1
        assert await broker.jobs.dead.purge(older_than=3600) == 0, "none is an hour old"
        agent.settings["fixed"] = True  # the consumer was fixed: send them back
        assert await broker.jobs.dead.requeue(reason="too big") == 3
        await eventually(lambda: sorted(agent.settings["done"]) == [1, 3, 5], 30)
        assert await broker.jobs.dead.requeue(limit=1) == 1
        await eventually(lambda: len(agent.settings["done"]) == 4, 30)
        assert len(await broker.jobs.dead.list()) == 1
        assert await broker.jobs.dead.purge() == 1
        assert await broker.jobs.dead.list() == []
        assert await broker.jobs.length() == 0


async def test_a_requeued_message_starts_again_and_says_why(factory: Factory) -> None:
    broker = await factory.broker()
    strict = Strict(broker=broker, settings={"done": [], "fixed": False})
    other = Other(broker=broker, settings={"done": []})
    async with strict, other:
        await broker.jobs.send({"n": 7, "bad": "no"})
        await eventually(lambda: _dead(broker, 1), 30)
        if await refused(broker.jobs.dead.requeue(to="other", limit=0)):
            pytest.skip("the transport refuses dead-letter work clearly")
        assert await broker.jobs.dead.requeue(to="other") == 1
        await eventually(lambda: other.settings["done"] == [7], 30)
        assert await broker.jobs.dead.list() == []


async def test_requeue_and_purge_exactly_the_letters_an_operator_picked(factory: Factory) -> None:
    broker = await factory.broker()
    agent = Strict(broker=broker, settings={"done": [], "fixed": False})
    async with agent:
        for n in range(4):
            await broker.jobs.send({"n": n, "bad": "same reason"})
        letters = await eventually(lambda: _dead(broker, 4), 30)
        if await refused(broker.jobs.dead.purge(letters=[])):
            pytest.skip("the transport refuses dead-letter work clearly")
        by_n = {letter.envelope.payload["n"]: letter for letter in letters}
        agent.settings["fixed"] = True
        assert await broker.jobs.dead.requeue(letters=[by_n[2]]) == 1
        await eventually(lambda: agent.settings["done"] == [2], 30)
        assert await broker.jobs.dead.purge(letters=[by_n[0], by_n[2]]) == 1, "2 is gone"
        left = await broker.jobs.dead.list()
        assert sorted(letter.envelope.payload["n"] for letter in left) == [1, 3]
        assert await broker.jobs.dead.purge() == 2


async def test_tail_by_key_replays_one_keys_messages(factory: Factory) -> None:
    broker = await factory.broker()
    if not broker.capabilities.replay:
        pytest.skip("no replay: covered by test_replay.py")
    for n in range(12):
        await broker.jobs.send({"n": n}, key="terra" if n % 3 == 0 else "aqua")
    stream = broker.jobs.tail(last=3, key="terra")
    got: list[int] = []
    try:
        async with asyncio.timeout(10):
            async for message in stream:
                assert message.headers["x-key"] == "terra"
                got.append(message.payload["n"])
                if len(got) == 3:
                    break
    except CapabilityError as exc:
        assert "cannot" in str(exc)
        pytest.skip("the transport refuses keyed replay clearly")
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert got == [3, 6, 9], "the last three of that key, oldest first"


async def test_declare_creates_queues_before_any_consumer(factory: Factory) -> None:
    broker = await factory.broker()
    names = await broker.declare()
    assert names == ["jobs", "other"]
    assert await broker.declare() == names, "declaring again changes nothing"
    extra = await broker.declare([Queue("later")])
    assert extra == ["later"]
    producer = await factory.broker(queues=Namespace([Queue("later")], kind="queue"))
    await producer.later.send({"n": 1})
    assert await producer.later.length() == 1


class Undertaker(MicroAgent):
    """Consumes the dead letters of ``jobs``; fails on the first try of each, then keeps it."""

    @consumer(QUEUES.jobs.dead, retries=5, backoff=Backoff(0.05, jitter=0))
    async def letter(self, letter: DeadLetter) -> None:
        seen = self.settings["tries"]
        seen[letter.reason] = seen.get(letter.reason, 0) + 1
        if seen[letter.reason] == 1:
            raise RuntimeError("not yet")
        self.settings["kept"].append((letter.reason, letter.attempt, letter.raw))


async def test_dead_letters_are_consumable(factory: Factory) -> None:
    broker = await factory.broker()
    strict = Strict(broker=broker, settings={"done": [], "fixed": False})
    undertaker = Undertaker(broker=broker, settings={"tries": {}, "kept": []})
    async with strict:
        await broker.jobs.send({"n": 1, "bad": "first"})
        await broker.jobs.send({"n": 2, "bad": "second"})
        await eventually(lambda: _dead(broker, 2), 30)
        if await refused(broker.jobs.dead.purge(limit=0)):
            pytest.skip("the transport refuses dead-letter work clearly")
        async with undertaker:
            await eventually(lambda: len(undertaker.settings["kept"]) == 2, 30)
            await eventually(lambda: _none(broker.jobs.dead.list()), 30)
            await broker.jobs.send({"n": 3, "bad": "third"})  # one that dies later is seen too
            await eventually(lambda: len(undertaker.settings["kept"]) == 3, 30)
    reasons = sorted(reason for reason, _, _ in undertaker.settings["kept"])
    assert reasons == ["Reject: first", "Reject: second", "Reject: third"]
    assert all(tries == 2 for tries in undertaker.settings["tries"].values()), "failed once each"
    assert all(attempt == 1 for _, attempt, _ in undertaker.settings["kept"])


async def _none(letters: Any) -> bool:
    return not await letters
