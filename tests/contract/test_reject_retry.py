"""A handler decides per message: Reject (dead-letter now) or Retry (again after a delay)."""

from __future__ import annotations

from typing import Any

import pytest

from microhive import Backoff, MicroAgent, Reject, Retry, consumer, current_message

from .conftest import QUEUES, Factory
from .helpers import eventually


class Calculator(MicroAgent):
    @consumer(QUEUES.jobs, retries=2, backoff=Backoff(0.05, jitter=0))
    async def divide(self, n: int, by: int, flaky: int = 0) -> None:
        message = current_message()
        assert message is not None
        self.settings["attempts"].append((n, message.attempt))
        if by == 0:
            raise Reject("division by zero")
        if message.attempt <= flaky:
            raise Retry("the database is busy", delay=0.05)
        self.settings["done"].append(n // by)


async def test_reject_dead_letters_at_once_and_retry_tries_again(factory: Factory) -> None:
    broker = await factory.broker()
    agent = Calculator(broker=broker, settings={"attempts": [], "done": []})
    async with agent:
        await broker.jobs.send({"n": 1, "by": 0})  # rejected on its first attempt
        await broker.jobs.send({"n": 10, "by": 2, "flaky": 2})  # two retries, then done
        await broker.jobs.send({"n": 20, "by": 2, "flaky": 9})  # retries run out
        letters = await eventually(lambda: _at_least(broker.jobs.dead_letters(), 2), 30)
        await eventually(lambda: agent.settings["done"] == [5], 30)
    attempts = agent.settings["attempts"]
    assert [a for n, a in attempts if n == 1] == [1], "a rejected message is not retried"
    assert [a for n, a in attempts if n == 10] == [1, 2, 3]
    assert [a for n, a in attempts if n == 20] == [1, 2, 3]
    by_n = {letter.envelope.payload["n"]: letter for letter in letters if letter.envelope}
    assert by_n[1].reason == "Reject: division by zero"
    assert by_n[1].attempt == 1
    assert by_n[20].reason == "Retry: the database is busy (after 3 attempts)"


def test_retry_checks_its_delay() -> None:
    with pytest.raises(ValueError, match="Retry"):
        Retry(delay=-1)
    assert Retry(delay=0).delay == 0


async def _at_least(letters: Any, count: int) -> Any:
    found = await letters
    return found if len(found) >= count else None
