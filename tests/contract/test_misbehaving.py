"""Handlers that misbehave: raise anything, hang, swallow their timeout, call sys.exit().

Whatever one handler does, the messages around it are handled, the worker that ran it goes
on, and the process keeps running: only the agent's own shutdown stops its workers. Each
misbehaving message fails like any failure (here retries=0: dead-lettered at once, with a
reason that names what happened). Schedules are covered in tests/core/test_misbehaving_jobs.py.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import Any

import pytest

from microhive import MicroAgent, RemoteError, consumer, receiver

from .conftest import QUEUES, SIGNALS, Factory
from .helpers import eventually


class Custom(BaseException):
    """A BaseException that is not an Exception, as some libraries define."""


async def misbehave(how: str) -> None:
    """Do what ``how`` says; "ok" returns at once."""
    if how == "raise":
        raise ValueError("plain failure")
    if how == "cancel":  # as a handler awaiting a task that other code cancelled
        task = asyncio.get_running_loop().create_task(asyncio.sleep(3600))
        task.cancel()
        await task
    if how == "base":
        raise Custom("custom base exception")
    if how == "exit":
        sys.exit(3)
    if how == "interrupt":
        raise KeyboardInterrupt
    if how == "hang":
        await asyncio.sleep(3600)
    if how == "swallow":  # catches the timeout's cancellation and returns later
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)


REASONS = {
    "raise": "ValueError: plain failure",
    "cancel": "HandlerAborted: handler raised CancelledError",
    "base": "HandlerAborted: handler raised Custom: custom base exception",
    "exit": "HandlerAborted: handler raised SystemExit: 3",
    "interrupt": "HandlerAborted: handler raised KeyboardInterrupt",
    "hang": "HandlerTimeout: job exceeded its timeout of 0.5 s",
    "swallow": "HandlerTimeout: job exceeded its timeout of 0.5 s (and ignored its cancellation)",
}
"""What each kind of misbehaviour is dead-lettered with (the reason starts with this)."""


class Worker(MicroAgent):
    @consumer(QUEUES.jobs, concurrency=2, retries=0, timeout=0.5)
    async def job(self, n: int, how: str) -> None:
        await misbehave(how)
        if how == "ok":  # "swallow" returns too, yet must count as a failure
            self.settings["done"].append(n)


async def test_no_handler_can_stop_a_consumer(factory: Factory) -> None:
    """Three of each kind (more than the consumer's concurrency) among 80 good messages."""
    broker = await factory.broker()
    agent = Worker(broker=broker, settings={"done": []})
    kinds = [kind for kind in REASONS for _ in range(3)]
    async with agent:
        n = 0
        for kind in kinds:
            for _ in range(3):
                await broker.jobs.send({"n": n, "how": "ok"})
                n += 1
            await broker.jobs.send({"n": -1, "how": kind})
        while n < 80:
            await broker.jobs.send({"n": n, "how": "ok"})
            n += 1
        await eventually(lambda: set(agent.settings["done"]) == set(range(80)), 30)
        letters = await eventually(lambda: _at_least(broker.jobs.dead_letters(), len(kinds)), 30)
        # the consumer is still healthy: a message sent now is handled
        await broker.jobs.send({"n": 80, "how": "ok"})
        await eventually(lambda: 80 in agent.settings["done"], 30)
    found = Counter()
    for letter in letters:
        assert letter.envelope is not None
        kind = letter.envelope.payload["how"]
        assert letter.reason.startswith(REASONS[kind]), (kind, letter.reason)
        assert letter.reason.endswith("(after 1 attempt)")
        found[kind] += 1
    assert found == Counter(kinds), "each misbehaving message dead-lettered exactly once"


class Listener(MicroAgent):
    @receiver(SIGNALS.ping, timeout=0.5)
    async def ping(self, n: int) -> int:
        how = self.settings["plan"].get(n, "ok")
        await misbehave(how)
        if how == "ok":
            self.settings["seen"].append(n)
        return n


async def test_no_receiver_can_stop_signals_or_calls(factory: Factory) -> None:
    bus = await factory.bus()
    caller = await factory.bus()
    plan = {n: kind for n, kind in enumerate(k for k in REASONS for _ in range(2))}
    agent = Listener(bus=bus, settings={"plan": plan, "seen": []})
    async with agent:
        total = len(plan) + 20
        for n in range(total):
            await caller.ping.send("test", n=n)
        good = set(range(total)) - set(plan)
        await eventually(lambda: good <= set(agent.settings["seen"]), 30)
        for n, kind in list(plan.items())[::2]:
            with pytest.raises(RemoteError) as info:
                await caller.ping.call("test", n=n, timeout=10)
            assert str(info.value).startswith(REASONS[kind].split(":")[0]), info.value
        assert await caller.ping.call("test", n=total, timeout=10) == total
    assert not set(plan) & set(agent.settings["seen"])


async def _at_least(letters: Any, count: int) -> Any:
    found = await letters
    return found if len(found) >= count else None
