"""``microhive.sync.Publisher``: blocking sends for code that is not asyncio."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections import Counter

import pytest

from microhive import Exchange, MicroAgent, Queue, TransportError, UnroutableError, consumer
from microhive.sync import Publisher

from . import server
from .conftest import QUEUES, Opened, eventually


class Counting(MicroAgent):
    @consumer(QUEUES.events_feed, concurrency=8)
    async def event(self, thread: int, i: int) -> None:
        self.settings["got"].append((thread, i))


def run_in_thread(function, *args):
    return asyncio.to_thread(function, *args)


async def test_many_threads_send_through_one_publisher(opened: Opened) -> None:
    publisher = Publisher(opened.url, sender="registrar")
    ids: list[str] = []

    def work(thread: int) -> None:
        for i in range(50):
            ids.append(publisher.send("events_feed", {"thread": thread, "i": i}))

    def all_threads() -> None:
        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    try:
        await run_in_thread(all_threads)
    finally:
        await run_in_thread(publisher.close)
    assert len(set(ids)) == 400
    agent = Counting(broker=await opened.broker(), settings={"got": []})
    async with agent:
        await eventually(lambda: len(agent.settings["got"]) >= 400)
    counts = Counter(agent.settings["got"])
    assert sorted(counts) == [(t, i) for t in range(8) for i in range(50)]
    assert set(counts.values()) == {1}


async def test_publish_to_an_exchange_and_unroutable(opened: Opened) -> None:
    alerts = Exchange("alerts", "topic")
    pages = Queue("pages", bindings=[(alerts, "alert.critical.#")])
    publisher = Publisher(opened.url, queues=[pages])
    try:
        await run_in_thread(
            lambda: publisher.publish(alerts, {"what": "disk"}, routing_key="alert.critical.db")
        )
        with pytest.raises(UnroutableError):
            await run_in_thread(
                lambda: publisher.publish(alerts, {"what": "x"}, routing_key="alert.info")
            )
    finally:
        await run_in_thread(publisher.close)
    broker = await opened.broker(queues=[pages])
    assert await broker.pages.length() == 1


async def test_unreachable_server_raises_after_the_connect_timeout() -> None:
    url = f"amqp://guest:secret-word@127.0.0.1:{server.free_port()}/?connect_timeout=1"
    publisher = Publisher(url)
    try:
        with pytest.raises(TransportError, match="could not connect") as caught:
            await run_in_thread(publisher.send, "jobs", {"n": 1})
    finally:
        await run_in_thread(publisher.close)
    assert "secret-word" not in str(caught.value)


async def test_closed_publisher_refuses(opened: Opened) -> None:
    publisher = Publisher(opened.url)
    await run_in_thread(publisher.send, "jobs", {"n": 1})
    await run_in_thread(publisher.close)
    with pytest.raises(TransportError, match="closed"):
        await run_in_thread(publisher.send, "jobs", {"n": 2})


def _send_in_child(publisher: Publisher, result: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        result.put(publisher.send("jobs", {"from": "child"}))
    except Exception as exc:  # reported to the parent
        result.put(f"error: {exc!r}")


async def test_a_forked_child_gets_a_connection_of_its_own(opened: Opened) -> None:
    publisher = Publisher(opened.url)
    try:
        await run_in_thread(publisher.send, "jobs", {"from": "parent"})
        context = multiprocessing.get_context("fork")
        result = context.Queue()
        child = context.Process(target=_send_in_child, args=(publisher, result))
        child.start()
        answer = await run_in_thread(result.get, True, 30)
        await run_in_thread(child.join, 30)
        assert isinstance(answer, str) and len(answer) == 32, answer
        assert child.exitcode == 0
        await run_in_thread(publisher.send, "jobs", {"from": "parent again"})
    finally:
        await run_in_thread(publisher.close)
    broker = await opened.broker()
    assert await broker.jobs.length() == 3
