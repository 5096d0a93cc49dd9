"""Batch consumers: the handler gets a list of payloads, settled per message on every engine."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from pydantic import BaseModel

from microhive import (
    Backoff,
    ConfigurationError,
    MicroAgent,
    Namespace,
    PartialFailure,
    Queue,
    Reject,
    Retry,
    consumer,
    current_message,
)

from .conftest import QUEUES, Factory
from .helpers import eventually


class Batcher(MicroAgent):
    @consumer(QUEUES.jobs, batch=50, batch_timeout=0.05, retries=1, backoff=Backoff(0.05))
    async def rows(self, items: list[dict[str, Any]]) -> None:
        assert current_message() is None, "a batch handles many messages, not one"
        self.settings["sizes"].append(len(items))
        fail = self.settings.get("fail", set())
        if self.settings.get("partial"):
            bad = {
                i: ValueError(f"row {item['n']}")
                for i, item in enumerate(items)
                if item["n"] in fail
            }
            self.settings["done"].extend(item["n"] for item in items if item["n"] not in fail)
            if bad:
                raise PartialFailure(bad)
            return
        if any(item["n"] in fail for item in items) and not self.settings["failed_once"]:
            self.settings["failed_once"] = True
            raise RuntimeError("the whole batch fails once")
        self.settings["done"].extend(item["n"] for item in items)


def batcher(broker: Any, **extra: Any) -> Batcher:
    return Batcher(broker=broker, settings={"sizes": [], "done": [], "failed_once": False, **extra})


async def test_a_batch_handler_gets_lists_and_every_message_once(factory: Factory) -> None:
    broker = await factory.broker()
    agent = batcher(broker)
    for n in range(300):  # sent before the consumer starts: batches fill up
        await broker.jobs.send({"n": n})
    async with agent:
        await eventually(lambda: len(agent.settings["done"]) >= 300, 30)
        await eventually(lambda: _is(broker.jobs.length(), 0), 30)
    assert Counter(agent.settings["done"]) == Counter(range(300))
    assert all(1 <= size <= 50 for size in agent.settings["sizes"])
    assert max(agent.settings["sizes"]) > 1, "messages were handed over together"


async def test_raising_fails_every_message_of_the_batch(factory: Factory) -> None:
    broker = await factory.broker()
    agent = batcher(broker, fail={7})
    for n in range(20):
        await broker.jobs.send({"n": n})
    async with agent:
        await eventually(lambda: set(agent.settings["done"]) == set(range(20)), 30)
        await eventually(lambda: _is(broker.jobs.length(), 0), 30)
    assert agent.settings["failed_once"]
    assert await broker.jobs.dead_letters() == []


async def test_partial_failure_fails_only_the_named_items(factory: Factory) -> None:
    broker = await factory.broker()
    agent = batcher(broker, fail={3, 11}, partial=True)
    for n in range(20):
        await broker.jobs.send({"n": n})
    async with agent:
        letters = await eventually(lambda: _at_least(broker.jobs.dead_letters(), 2), 30)
        await eventually(lambda: _is(broker.jobs.length(), 0), 30)
    assert set(agent.settings["done"]) == set(range(20)) - {3, 11}
    assert sorted(letter.envelope.payload["n"] for letter in letters if letter.envelope) == [3, 11]
    for letter in letters:
        assert letter.attempt == 2, "each failed item was retried by its own attempts"
        assert letter.reason.startswith("ValueError: row ")


class Row(BaseModel):
    n: int


ROWS = Queue("rows", schema=Row)


class Models(MicroAgent):
    @consumer(ROWS, batch=20, batch_timeout=0.05)
    async def rows(self, items: list[Row]) -> None:
        assert all(isinstance(item, Row) for item in items)
        self.settings["done"].extend(item.n for item in items)


async def test_a_schema_queue_gives_models_and_dead_letters_bad_items(factory: Factory) -> None:
    broker = await factory.broker(queues=Namespace([ROWS], kind="queue"))
    plain = await factory.broker(queues=Namespace([Queue("rows")], kind="queue"))
    agent = Models(broker=broker, settings={"done": []})
    for n in range(10):
        await broker.rows.send({"n": n})
    await plain.rows.send({"n": "not a number"})
    async with agent:
        await eventually(lambda: len(agent.settings["done"]) >= 10, 30)
        [letter] = await eventually(broker.rows.dead_letters, 30)
    assert sorted(set(agent.settings["done"])) == list(range(10))
    assert letter.reason.startswith("invalid payload: ValidationError")


class Hanging(MicroAgent):
    @consumer(QUEUES.jobs, batch=10, batch_timeout=0.2, retries=0, timeout=0.3)
    async def rows(self, items: list[Any]) -> None:
        await asyncio.sleep(3600)


async def test_the_timeout_covers_the_whole_batch(factory: Factory) -> None:
    broker = await factory.broker()
    for n in range(5):
        await broker.jobs.send({"n": n})
    async with Hanging(broker=broker):
        letters = await eventually(lambda: _at_least(broker.jobs.dead_letters(), 5), 30)
    assert all(letter.reason.startswith("HandlerTimeout") for letter in letters)


def test_a_batch_consumer_is_checked_when_declared() -> None:
    with pytest.raises(ConfigurationError, match="batch must be an integer >= 1"):
        consumer(QUEUES.jobs, batch=0)
    with pytest.raises(ConfigurationError, match="batch_timeout must be a number >= 0"):
        consumer(QUEUES.jobs, batch=5, batch_timeout=-1)
    with pytest.raises(ConfigurationError, match="takes one argument, the list"):

        class Wrong(MicroAgent):
            @consumer(QUEUES.jobs, batch=5)
            async def rows(self, n: int, text: str) -> None: ...


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _at_least(letters: Any, count: int) -> Any:
    found = await letters
    return found if len(found) >= count else None


class Deciding(MicroAgent):
    @consumer(QUEUES.jobs, batch=20, batch_timeout=0.05, retries=1, backoff=Backoff(0.01))
    async def rows(self, items: list[dict[str, Any]]) -> None:
        current = current_message()
        assert current is None
        decisions: dict[int, BaseException] = {}
        for index, item in enumerate(items):
            if item["n"] == 1:
                decisions[index] = Reject("one is rejected")
            elif item["n"] == 2 and item["n"] not in self.settings["retried"]:
                self.settings["retried"].add(2)
                decisions[index] = Retry("two comes back", delay=0.01)
            else:
                self.settings["done"].append(item["n"])
        if decisions:
            raise PartialFailure(decisions)


async def test_reject_and_retry_work_per_item(factory: Factory) -> None:
    broker = await factory.broker()
    agent = Deciding(broker=broker, settings={"done": [], "retried": set()})
    for n in range(4):
        await broker.jobs.send({"n": n})
    async with agent:
        [letter] = await eventually(broker.jobs.dead_letters, 30)
        await eventually(lambda: sorted(set(agent.settings["done"])) == [0, 2, 3], 30)
    assert letter.reason == "Reject: one is rejected"
    assert letter.attempt == 1, "rejected at once, not retried"
