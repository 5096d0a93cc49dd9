"""Calls: the first answer, every answer, timeouts and remote errors, typed at the caller."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from microhive import CallTimeout, MicroAgent, RemoteError, receiver

from .conftest import SIGNALS, Factory


class Answering(MicroAgent):
    @receiver(SIGNALS.check_user)
    async def check_user(self, user, **kw):
        answers = self.settings.get("answers", {})
        if user == "boom":
            raise LookupError("no such table")
        if user == "object":
            return object()
        return answers.get(user, user)

    @receiver(SIGNALS.slow, timeout=0.1)
    async def slow(self, delay, **kw):
        await asyncio.sleep(delay)
        return "late"


@pytest.mark.parametrize("value", [False, None, 0, "", [1, "a", None], {"a": {"b": [True]}}, 3.5])
async def test_call_returns_the_value(factory: Factory, value: Any) -> None:
    bus = await factory.bus()
    async with Answering(bus, settings={"answers": {"u": value}}):
        assert await bus.check_user.call("mention_agent", user="u", timeout=5) == value


async def test_call_without_responder_times_out(factory: Factory) -> None:
    bus = await factory.bus()
    started = asyncio.get_running_loop().time()
    with pytest.raises(CallTimeout, match="check_user"):
        await bus.check_user.call("me", user="x", timeout=0.2)
    assert asyncio.get_running_loop().time() - started >= 0.19
    assert isinstance(CallTimeout("x"), TimeoutError)


async def test_remote_exception_raises_remote_error(factory: Factory) -> None:
    bus = await factory.bus()
    agent = Answering(await factory.bus())
    async with agent:
        with pytest.raises(RemoteError) as caught:
            await bus.check_user.call("me", user="boom", timeout=5)
    assert caught.value.remote_type == "LookupError"
    assert caught.value.remote_message == "no such table"
    assert caught.value.responder == agent.instance_id


async def test_receiver_timeout_reaches_the_caller(factory: Factory) -> None:
    bus = await factory.bus()
    async with Answering(bus):
        with pytest.raises(RemoteError, match="HandlerTimeout"):
            await bus.slow.call("me", delay=5, timeout=5)


async def test_unencodable_answer_is_a_remote_error(factory: Factory) -> None:
    bus = await factory.bus()
    async with Answering(bus):
        with pytest.raises(RemoteError, match="PayloadError"):
            await bus.check_user.call("me", user="object", timeout=5)


async def test_gather_returns_every_answer_with_responder(factory: Factory) -> None:
    bus = await factory.bus()
    agents = [Answering(await factory.bus(), settings={"answers": {"u": i}}) for i in range(3)]
    for agent in agents:
        await agent.start()
    try:
        replies = await bus.check_user.gather("me", user="u", timeout=0.5)
        assert sorted(r.value for r in replies) == [0, 1, 2]
        assert {r.responder for r in replies} == {a.instance_id for a in agents}
        assert all(r.ok for r in replies)
        fast = await bus.check_user.gather("me", user="u", timeout=10, expect=3)
        assert len(fast) == 3
        failed = await bus.check_user.gather("me", user="boom", timeout=0.3)
        assert len(failed) == 3 and all(
            r.error and r.error.remote_type == "LookupError" for r in failed
        )
    finally:
        for agent in agents:
            await agent.stop()


async def test_gather_without_responders_is_empty(factory: Factory) -> None:
    bus = await factory.bus()
    assert await bus.check_user.gather("me", user="u", timeout=0.1) == []


async def test_finished_call_never_disturbs_the_caller(factory: Factory) -> None:
    bus = await factory.bus()
    async with Answering(bus):

        async def caller() -> str:
            assert await bus.check_user.call("me", user="x", timeout=0.1) == "x"
            await asyncio.sleep(0.3)  # well past the call's timeout
            return "survived"

        assert await asyncio.create_task(caller()) == "survived"


async def test_call_from_inside_a_receiver(factory: Factory) -> None:
    class Asker(MicroAgent):
        @receiver(SIGNALS.ping)
        async def ping(self, n, **kw):
            return await self.bus.check_user.call("asker", user=f"u{n}", timeout=5)

    bus = await factory.bus()
    async with Answering(bus), Asker(bus):
        assert await bus.ping.call("me", n=7, timeout=5) == "u7"


async def test_concurrent_calls_get_their_own_answers(factory: Factory) -> None:
    bus = await factory.bus()
    async with Answering(bus):
        results = await asyncio.gather(
            *(bus.check_user.call("me", user=f"u{i}", timeout=5) for i in range(50))
        )
    assert results == [f"u{i}" for i in range(50)]
