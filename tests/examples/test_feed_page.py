"""The feed's pages in headless Chromium (examples/feed on memory://): the feed shows the
events and a new one appears without a reload; a like updates it live; the admin page shows
the dead letters with their reasons, sends a fixed event and requeues the like that waited
for it. Writes the README's screenshots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from examples.feed.app import demo_app
from microhive import QueueBroker

from ..browser import screenshot
from .feed_support import HIRES, dead_until, feed_until, serving

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "feed"
WAIT = 30_000  # ms: a failure guard only


async def test_the_feed_page_is_live_and_the_admin_page_fixes_and_requeues(
    page: Any, tmp_path: Path
) -> None:
    app = demo_app("memory://", f"sqlite:///{tmp_path / 'feed.db'}")
    async with (
        serving(app) as base,
        httpx.AsyncClient(follow_redirects=True) as client,
        QueueBroker.from_url("memory://") as other_service,
    ):
        ann = (await client.post(f"{base}/api/employees", json=HIRES[0])).json()["message_id"]
        await client.post(f"{base}/api/employees/import", json=HIRES[1:])
        await client.post(f"{base}/api/employees/Bob/position", json={"position": "head of sales"})
        await client.post(f"{base}/api/departments/R&D/rename", json={"new_name": "Research"})
        await feed_until(client, base, lambda d: d["count"] == 5, "five events")
        await client.post(f"{base}/api/events/{ann}/likes", json={"employee": "Carol"})
        await feed_until(client, base, lambda d: d["count"] == 6, "the like")

        await page.goto(f"{base}/")
        await page.wait_for_function(
            "document.querySelectorAll('li.event').length === 6", timeout=WAIT
        )
        assert await page.locator("li.event").first.inner_text() != ""
        await page.locator("#status", has_text="live").wait_for(timeout=WAIT)
        ann_likes = page.locator(f'li[data-message-id="{ann}"] button.like')
        assert await ann_likes.inner_text() == "♥ 1"

        # a new event appears without a reload
        await page.evaluate("window.notReloaded = true")
        dan = {"employee": "Dan", "department": "Support", "position": "lead"}
        dan_id = (await client.post(f"{base}/api/employees", json=dan)).json()["message_id"]
        await page.get_by_text("Dan joined Support as lead").wait_for(timeout=WAIT)
        await page.locator(f'li[data-message-id="{dan_id}"] button.like').click()
        await page.locator(f'li[data-message-id="{dan_id}"] button.like', has_text="♥ 1").wait_for(
            timeout=WAIT
        )
        assert await page.locator("#count").inner_text() == "8"
        assert await page.evaluate("window.notReloaded") is True
        await screenshot(page, EXAMPLE / "screenshot.png")

        # an old service sends a hire without a position; a like of it waits, then dies too
        bad = {"kind": "hired", "employee": "Eve", "department": "Ops"}
        bad_id = await other_service.queue("events").send(bad, sender="hr-import")
        await client.post(f"{base}/api/events/{bad_id}/likes", json={"employee": "Ann"})
        await dead_until(client, base, 2, timeout=60)

        await page.goto(f"{base}/admin")
        assert await page.locator("#count").inner_text() == "2"
        broken = page.locator("tr.letter", has_text="invalid payload")
        waiting = page.locator("tr.letter", has_text="Retry: liked event")
        assert "hired.position" in await broken.locator("td.reason").inner_text()
        assert bad_id in await waiting.locator("td.reason").inner_text()
        await screenshot(page, EXAMPLE / "admin.png")

        await broken.locator("textarea").fill(json.dumps({**bad, "position": "admin"}))
        await broken.get_by_role("button", name="Fix and send").click()
        await page.locator(".note", has_text="Sent the fixed event").wait_for(timeout=WAIT)
        await feed_until(client, base, lambda d: d["count"] == 9, "the fixed event")
        await waiting.get_by_role("button", name="Requeue").click()
        await page.locator(".note", has_text="Requeued 1 dead letter(s).").wait_for(timeout=WAIT)
        assert await page.locator("tr.letter").count() == 0

        await page.goto(f"{base}/")
        await page.get_by_text("Ann liked “Eve joined Ops as admin”").wait_for(timeout=WAIT)
        eve_likes = page.locator(f'li[data-message-id="{bad_id}"] button.like')
        assert await eve_likes.inner_text() == "♥ 1"
        await page.close()  # its live stream ends before the app stops
