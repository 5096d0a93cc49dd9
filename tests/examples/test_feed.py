"""The company feed (examples/feed) on memory:// in one process, through its HTTP API, on
SQLite and PostgreSQL: every kind of event reaches the feed once; a bad event is
dead-lettered with its reason, shown to the admin, fixed and sent again; a like that waited
for it is requeued; the store itself is idempotent under any mix of redeliveries."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from examples.feed.app import demo_app
from examples.feed.events import Hired
from examples.feed.store import FeedStore
from microhive import QueueBroker

from .feed_support import HIRES, database, dead_until, feed, feed_until, serving, texts

__all__ = ["database"]  # the fixture, for this module


async def test_every_kind_of_event_reaches_the_feed_once(database: str) -> None:
    async with serving(demo_app("memory://", database)) as base, httpx.AsyncClient() as client:
        ids = [
            (await client.post(f"{base}/api/employees", json=HIRES[0])).json()["message_id"],
            *[
                item["message_id"]
                for item in (
                    await client.post(f"{base}/api/employees/import", json=HIRES[1:])
                ).json()
            ],
        ]
        changed = await client.post(f"{base}/api/employees/Ann/position", json={"position": "lead"})
        renamed = await client.post(
            f"{base}/api/departments/R&D/rename", json={"new_name": "Research"}
        )
        assert changed.status_code == renamed.status_code == 202
        await feed_until(client, base, lambda d: d["count"] == 5, "five events")
        liked = await client.post(f"{base}/api/events/{ids[0]}/likes", json={"employee": "Bob"})
        assert liked.status_code == 202
        document = await feed_until(client, base, lambda d: d["count"] == 6, "the like")
    assert texts(document)[0] == "Bob liked “Ann joined R&D as engineer”", document
    assert sorted(texts(document)[1:]) == [  # up to 8 are stored at once: in any order
        "Ann is now lead",
        "Ann joined R&D as engineer",
        "Bob joined Sales as manager",
        "Carol joined R&D as designer",
        "Department R&D is now called Research",
    ]
    by_id = {item["message_id"]: item for item in document["items"]}
    assert set(ids) <= set(by_id)
    assert by_id[ids[0]]["likes"] == 1
    assert {item["sender"] for item in document["items"]} == {"registrar"}


async def test_the_registrar_refuses_a_bad_request_and_sends_nothing(tmp_path: Path) -> None:
    app = demo_app("memory://", f"sqlite:///{tmp_path / 'feed.db'}")
    async with serving(app) as base, httpx.AsyncClient() as client:
        missing = await client.post(f"{base}/api/employees", json={"employee": "Ann"})
        empty = await client.post(f"{base}/api/employees/Ann/position", json={"position": ""})
        long = await client.post(
            f"{base}/api/employees/{'A' * 201}/position", json={"position": "x"}
        )
        batch = await client.post(
            f"{base}/api/employees/import", json=[HIRES[0], {"employee": "Bob"}]
        )
        assert [r.status_code for r in (missing, empty, long, batch)] == [422] * 4
        assert "department" in missing.text
        assert await app.state.broker.length("events") == 0, "not even half of the batch"
        assert (await feed(client, base))["count"] == 0


async def test_a_bad_event_is_dead_lettered_shown_fixed_and_the_like_requeued(
    tmp_path: Path,
) -> None:
    async with (
        serving(demo_app("memory://", f"sqlite:///{tmp_path / 'feed.db'}")) as base,
        httpx.AsyncClient(follow_redirects=True) as client,
        QueueBroker.from_url("memory://") as other_service,
    ):
        # another service, on an old version, sends a hire without a position
        bad = {"kind": "hired", "employee": "Dan", "department": "Support"}
        bad_id = await other_service.queue("events").send(bad, sender="hr-import")
        (letter,) = await dead_until(client, base, 1)
        assert letter["message_id"] == bad_id
        assert letter["sender"] == "hr-import"
        assert letter["reason"].startswith("invalid payload: ValidationError")
        assert "hired.position" in letter["reason"]
        page = (await client.get(f"{base}/admin")).text
        assert bad_id in page and "hired.position" in page and "Field required" in page

        # someone likes Dan's arrival: it is not in the feed, so the like waits, then dies
        await client.post(f"{base}/api/events/{bad_id}/likes", json={"employee": "Eve"})
        letters = await dead_until(client, base, 2, timeout=60)
        like = next(item for item in letters if item["payload"]["kind"] == "liked")
        assert like["reason"].startswith("Retry: liked event")
        assert like["reason"].endswith("(after 5 attempts)")

        # a fix that is still wrong is refused on the page, and nothing is sent
        still_bad = await client.post(
            f"{base}/admin/resend", data={"key": letter["key"], "payload": json.dumps(bad)}
        )
        assert "still not a valid event" in still_bad.text
        assert len(await dead_until(client, base, 2)) == 2

        # the operator fixes the payload: it is stored under the dead letter's message id
        fixed = await client.post(
            f"{base}/admin/resend",
            data={"key": letter["key"], "payload": json.dumps({**bad, "position": "support"})},
        )
        assert "Sent the fixed event" in fixed.text
        document = await feed_until(client, base, lambda d: d["count"] == 1, "the fixed event")
        assert [(i["message_id"], i["sender"]) for i in document["items"]] == [
            (bad_id, "hr-import")
        ]
        again = await client.post(
            f"{base}/admin/resend", data={"key": letter["key"], "payload": "{}"}
        )
        assert "is gone" in again.text, "a second click sends nothing"

        # now the like can be requeued as it is
        requeued = await client.post(f"{base}/admin/requeue", data={"key": like["key"]})
        assert "Requeued 1 dead letter(s)." in requeued.text
        document = await feed_until(client, base, lambda d: d["count"] == 2, "the like")
        assert texts(document)[0] == "Eve liked “Dan joined Support as support”"
        assert document["items"][1]["likes"] == 1
        assert await dead_until(client, base, 0) == []


async def test_requeue_and_purge_every_letter_whose_reason_matches(tmp_path: Path) -> None:
    async with (
        serving(demo_app("memory://", f"sqlite:///{tmp_path / 'feed.db'}")) as base,
        httpx.AsyncClient(follow_redirects=True) as client,
        QueueBroker.from_url("memory://") as other_service,
    ):
        await other_service.queue("events").send({"kind": "fired", "employee": "Zed"})
        await other_service.queue("events").send(["not", "an", "object"])
        await dead_until(client, base, 2)
        requeued = await client.post(f"{base}/admin/requeue", data={"reason": "'fired'"})
        assert "Requeued 1 dead letter(s)." in requeued.text
        letters = await dead_until(client, base, 2)
        assert sorted(letter["attempt"] for letter in letters) == [1, 1]
        purged = await client.post(f"{base}/admin/purge", data={"reason": ""})
        assert "Purged 2 dead letter(s)." in purged.text
        assert await dead_until(client, base, 0) == []


async def read_stream(
    client: httpx.AsyncClient, url: str, count: int, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The first ``count`` events of a server-sent event stream."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(60), client.stream("GET", url, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                got.append(json.loads(line.removeprefix("data: ")))
                if len(got) == count:
                    break
    return got


async def test_the_live_stream_follows_the_feed_in_order_and_resumes(tmp_path: Path) -> None:
    app = demo_app("memory://", f"sqlite:///{tmp_path / 'feed.db'}")
    async with serving(app) as base, httpx.AsyncClient(timeout=60) as client:
        people = [{"employee": f"e{n}", "department": "d", "position": "p"} for n in range(250)]
        assert (await client.post(f"{base}/api/employees/import", json=people)).status_code == 202
        await feed_until(client, base, lambda d: d["count"] == 250, "250 events")
        following = asyncio.create_task(read_stream(client, f"{base}/api/feed/stream", 251))
        await client.post(f"{base}/api/employees", json=HIRES[0])
        got = await following
        assert [item["id"] for item in got] == list(range(1, 252)), "every event, in order"
        assert got[-1]["text"] == "Ann joined R&D as engineer"
        resumed = await read_stream(
            client, f"{base}/api/feed/stream", 1, headers={"Last-Event-ID": "250"}
        )
        assert [item["id"] for item in resumed] == [251], "a reconnecting browser goes on"


EVENT = Hired(employee="Ann", department="R&D", position="engineer")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(deliveries=st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=40))
def test_the_store_keeps_one_row_per_message_id_whatever_is_redelivered(
    tmp_path: Path, deliveries: list[str]
) -> None:
    async def run() -> tuple[list[bool], list[str], int]:
        store = FeedStore(f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}")  # one per example
        await store.open()
        try:
            added = await asyncio.gather(*(store.add(d, EVENT, "t", 1.0) for d in deliveries))
            return added, await store.message_ids(), await store.count()
        finally:
            await store.close()

    added, ids, count = asyncio.run(run())
    assert sorted(ids) == sorted(set(deliveries))
    assert count == len(set(deliveries))
    assert sum(added) == len(set(deliveries)), "each id was new exactly once"


async def test_the_store_is_idempotent_under_concurrent_writers(
    database: str,
) -> None:
    stores = [FeedStore(database) for _ in range(3)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        ids = [f"m{n}" for n in range(60)]
        added = await asyncio.gather(
            *(store.add(i, EVENT, "t", float(n)) for store in stores for n, i in enumerate(ids))
        )
        assert sum(added) == 60
        assert sorted(await stores[0].message_ids()) == sorted(ids)
        newest: list[Any] = (await stores[1].latest(limit=5)).items
        assert len(newest) == 5
        assert [item.id for item in newest] == sorted((item.id for item in newest), reverse=True)
    finally:
        await asyncio.gather(*(store.close() for store in stores))
