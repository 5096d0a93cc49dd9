"""The company feed (examples/feed) on RabbitMQ, the seed's engine, as real processes: the
one command with separate registrar, worker and page processes; the seed's own pika
publisher, unchanged, feeding it; and a feed worker SIGKILLed mid-run and started again,
after which every registered event is in the feed exactly once."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import httpx

from examples.feed.events import EVENTS
from microhive import QueueBroker
from microhive.envelope import new_id

from ..amqp import server
from ..amqp.test_plain_clients import _events_feed_config, publish_to_events_feed
from ..cli.helpers import Process
from ..engines import free_port, reachable
from ..processes import until
from .feed_support import HIRES, dead_until, feed, feed_until, texts

WORKER = "examples.feed.agent:FeedAgent"


def rabbit_url() -> str:
    """The shared RabbitMQ, this run's virtual host, a queue-name prefix of this test's own."""
    return f"{server.require_amqp()}?prefix=f{new_id()[:10]}."


def prefix(url: str) -> str:
    return url.split("prefix=", 1)[1]


async def listening(port: int, process: Process) -> None:
    def up() -> bool:
        assert process.popen.poll() is None, f"exited:\n{process.output}"
        return reachable("127.0.0.1", port, 0.2)

    await until(up, 60, f"a server on port {port}")


def service(role: str, url: str, database: str, port: int) -> Process:
    return Process(
        "-m", "examples.feed", "--only", role, "--transport", url, "--database", database,
        "--port", str(port), "--log-level", "warning",
    )  # fmt: skip


def worker(url: str, database: str) -> Process:
    return Process(
        "-m", "microhive", "run", WORKER, "--transport", url, "--grace-period", "1",
        env={"FEED_DATABASE_URL": database},
    )  # fmt: skip


def point_the_seed_publisher_at(url: str) -> None:
    """The seed's pika code reads its DSN and queue name from ``_events_feed_config``."""
    _events_feed_config["queue"] = {"dsn": url.split("?", 1)[0], "name": f"{prefix(url)}events"}


async def test_one_command_runs_the_feed_on_rabbitmq_with_the_seeds_pika_publisher(
    tmp_path: Path,
) -> None:
    url, port = rabbit_url(), free_port()
    while reachable("127.0.0.1", port + 1, 0.1):  # the registrar takes the next port
        port = free_port()
    registrar = port + 1
    database = f"sqlite:///{tmp_path / 'feed.db'}"
    everything = Process(
        "-m", "examples.feed", "--transport", url, "--database", database,
        "--port", str(port), "--workers", "2",
    )  # fmt: skip
    page, api = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{registrar}"
    try:
        await listening(port, everything)
        await listening(registrar, everything)
        await asyncio.to_thread(everything.wait_for_line, r"running 1 agent", 60)
        async with httpx.AsyncClient(follow_redirects=True, timeout=30) as client:
            first = (await client.post(f"{api}/api/employees", json=HIRES[0])).json()
            imported = await client.post(f"{api}/api/employees/import", json=HIRES[1:])
            assert imported.status_code == 202, imported.text
            await client.post(f"{api}/api/departments/R&D/rename", json={"new_name": "Research"})
            await feed_until(client, page, lambda d: d["count"] == 4, "four events")
            liking = f"{page}/api/events/{first['message_id']}/likes"  # the page's button
            assert (await client.post(liking, json={"employee": "Bob"})).status_code == 202

            # the seed's registrar code, as it is, publishes a good event and a bad one
            point_the_seed_publisher_at(url)
            good, bad = new_id(), new_id()
            hire = {"kind": "hired", "employee": "Dan", "department": "Support", "position": "lead"}
            await asyncio.to_thread(publish_to_events_feed, hire, good)
            await asyncio.to_thread(publish_to_events_feed, {"kind": "hired", "name": "Eve"}, bad)
            document = await feed_until(client, page, lambda d: d["count"] == 6, "six events")
            (letter,) = await dead_until(client, page, 1)
            assert letter["message_id"] == bad
            assert letter["sender"] == "registrar"  # the seed's app_id
            assert "hired.employee" in letter["reason"] and "Field required" in letter["reason"]

            fix = {"kind": "hired", "employee": "Eve", "department": "Ops", "position": "admin"}
            sent = await client.post(
                f"{page}/admin/resend", data={"key": letter["key"], "payload": json.dumps(fix)}
            )
            assert "Sent the fixed event" in sent.text
            document = await feed_until(client, page, lambda d: d["count"] == 7, "the fix")
            await dead_until(client, page, 0)
        by_id = {item["message_id"]: item for item in document["items"]}
        assert by_id[good]["text"] == "Dan joined Support as lead"
        assert by_id[bad]["text"] == "Eve joined Ops as admin"
        assert by_id[first["message_id"]]["likes"] == 1
        (like,) = [item for item in document["items"] if item["kind"] == "liked"]
        assert like["sender"] == "feed-page"
        assert "Department R&D is now called Research" in texts(document)
        everything.popen.send_signal(signal.SIGTERM)
        assert everything.wait(60) == 0, everything.output
    finally:
        everything.kill()


async def register(client: httpx.AsyncClient, api: str, count: int, ids: list[str]) -> None:
    """``count`` hires, half one by one (the async path, 16 at a time), half in batches of
    50 (the registrar's synchronous path, microhive.sync.Publisher); their message ids go
    to ``ids`` as they are accepted."""
    people = [
        {"employee": f"e{n}", "department": f"d{n % 7}", "position": "engineer"}
        for n in range(count)
    ]
    single, batched = people[: count // 2], people[count // 2 :]

    async def one_by_one(part: list[dict[str, Any]]) -> None:
        for person in part:
            response = await client.post(f"{api}/api/employees", json=person)
            assert response.status_code == 202, response.text
            ids.append(response.json()["message_id"])

    async def in_batches() -> None:
        for start in range(0, len(batched), 50):
            response = await client.post(
                f"{api}/api/employees/import", json=batched[start : start + 50]
            )
            assert response.status_code == 202, response.text
            ids.extend(item["message_id"] for item in response.json())

    await asyncio.gather(in_batches(), *(one_by_one(single[k::16]) for k in range(16)))


async def test_a_feed_worker_killed_mid_run_leaves_every_event_in_the_feed_exactly_once(
    tmp_path: Path,
) -> None:
    total = 1200
    url, database = rabbit_url(), f"sqlite:///{tmp_path / 'feed.db'}"
    page_port, api_port = free_port(), free_port()
    page, api = f"http://127.0.0.1:{page_port}", f"http://127.0.0.1:{api_port}"
    registrar = service("registrar", url, database, api_port)
    pages = service("page", url, database, page_port)
    first: Process | None = None
    second: Process | None = None
    try:
        await listening(api_port, registrar)
        await listening(page_port, pages)
        async with httpx.AsyncClient(timeout=60) as client:
            ids: list[str] = []
            registering = asyncio.create_task(register(client, api, total, ids))
            # a backlog first, so that the worker is busy (8 events in flight) when killed
            await until(lambda: len(ids) >= total // 3, 120, "a backlog of events")
            first = worker(url, database)

            async def midway() -> bool:
                count: int = (await feed(client, page, 1))["count"]
                assert count < total, "the worker finished before it could be killed"
                return count >= total // 5

            await until(midway, 120, "a fifth of the events in the feed")
            first.popen.kill()  # SIGKILL: no ack, no goodbye
            first.wait(10)
            registered_at_kill = len(ids)
            in_feed_at_kill = (await feed(client, page, 1))["count"]
            assert in_feed_at_kill < registered_at_kill, "killed with events still to do"
            await registering
            second = worker(url, database)
            await feed_until(client, page, lambda d: d["count"] >= total, "every event", 180)
            await asyncio.sleep(1)  # anything still arriving would be a duplicate row
            document = await feed(client, page, 500)
            assert document["count"] == total
            assert await dead_until(client, page, 0) == []
        stored = await stored_ids(database)
        assert len(stored) == total == len(set(stored)), "one row per event"
        assert set(stored) == set(ids), "every registered event, nothing else"
        async with QueueBroker.from_url(url, queues=[EVENTS]) as broker:
            assert await broker.length(EVENTS) == 0
        again = second.output.count("already in the feed")
        print(
            f"killed with {in_feed_at_kill} of {registered_at_kill} registered events in the "
            f"feed ({total} in all); {again} delivered again after the restart"
        )
        second.popen.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, second.output
    finally:
        for process in (first, second, registrar, pages):
            if process is not None:
                process.kill()


async def stored_ids(database: str) -> list[str]:
    from examples.feed.store import FeedStore

    store = FeedStore(database)
    try:
        return await store.message_ids()
    finally:
        await store.close()
