"""The console in headless Chromium against Redis: ``microhive console`` and the hive it
watches (tests/console/hive.py) run as real processes; the page logs in, sees the backlog
grow and the agents alive by their heartbeats, and requeues a dead letter that the (fixed)
worker then handles. The picture in docs/operations.md is taken here."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from microhive import QueueBroker
from microhive.envelope import new_id
from microhive.tasks.store import JobRecord, JobState
from microhive.tasks.stores.engines import open_engine_store
from microhive.testing import eventually
from tests import engines
from tests.browser import screenshot
from tests.cli.helpers import REPO, Process
from tests.console.hive import INVOICE

TOKEN = "console-test-token"
SCREENSHOT = REPO / "docs" / "images" / "console.png"
WAIT = 30_000  # ms: failure guards only


PREFIX = f"mhconsole-{new_id()[:10]}:"


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    engines.require_redis()
    yield engines.with_query(engines.REDIS_URL, prefix=PREFIX)
    await engines.delete_prefix(engines.REDIS_URL, PREFIX)


async def dead_count(url: str) -> int:
    async with QueueBroker.from_url(url) as broker:
        return len(await broker.queue("console_orders").dead.list())


async def test_console_in_chromium(page: Any, redis_url: str, tmp_path: Path) -> None:
    record = tmp_path / "orders"
    broken = record.with_suffix(".broken")
    broken.touch()
    hive = Process(
        "-m", "microhive", "run", "tests.console.hive", "--transport", redis_url,
        "--heartbeat", "1", "--grace-period", "1", env={"MH_CONSOLE_RECORD": str(record)},
    )  # fmt: skip
    port = engines.free_port()
    console = Process(
        "-m", "microhive", "console", "tests.console.hive", "--transport", redis_url,
        "--port", str(port), "--token", TOKEN,
    )  # fmt: skip
    try:
        console.wait_for_line(r"microhive console on http://127\.0\.0\.1:", timeout=30)
        hive.wait_for_line(r"running 2 agent\(s\)", timeout=30)
        async with QueueBroker.from_url(redis_url) as broker:  # the broken worker parks them
            for item in ("book", "lamp"):
                await broker.queue("console_orders").send({"item": item})
        assert await eventually(lambda: _at_least(redis_url, 2), timeout=30)
        invoiced = await jobs_for_the_panel(redis_url)
        broken.unlink()  # the worker is fixed: a requeued order is handled now

        base = f"http://127.0.0.1:{port}/"
        await page.goto(base)
        assert page.url.endswith("/login")  # no session: the login page
        await page.fill("input[name=token]", "wrong-token-here")
        await page.click("button[type=submit]")
        await page.wait_for_selector("#login-error:has-text('login refused')", timeout=WAIT)
        await page.fill("input[name=token]", TOKEN)
        await page.click("button[type=submit]")
        await page.wait_for_url(base, timeout=WAIT)
        await page.wait_for_selector("#live.on", timeout=WAIT)

        # the backlog's length changes while the producer runs
        length = page.locator('tr[data-queue="console_backlog"] .length')
        first = await eventually(lambda: _number(length), timeout=30)
        assert await eventually(lambda: _grew(length, first + 3), timeout=30)
        # both agents alive by their heartbeats
        for agent in ("Producer", "Worker"):
            await page.wait_for_selector(f'tr.alive[data-agent="{agent}"]', timeout=WAIT)
        # signals flowing, jobs by state
        await page.wait_for_selector('.chip[data-signal="console_tick"]', timeout=WAIT)
        await page.wait_for_selector('#jobs tr[data-job="job-3"] .state-failed', timeout=WAIT)
        await see_task_and_consumer(page, invoiced)

        # requeue the "book" dead letter from the page
        await page.click('tr[data-queue="console_orders"]')
        card = page.locator(".letter", has_text='"book"')
        await card.wait_for(timeout=WAIT)
        await page.wait_for_selector(".letter:has-text('lamp')", timeout=WAIT)
        await page.wait_for_timeout(3000)  # a few more samples on the charts for the picture
        await card.locator("button.requeue").click()
        await page.wait_for_selector("#notice:has-text('Requeued 1 dead letter')", timeout=WAIT)
        assert await eventually(lambda: record.exists() and "book" in record.read_text(), 30)
        dead = page.locator('tr[data-queue="console_orders"] .dead')
        assert await eventually(lambda: _is(dead, "1"), timeout=30)
        await card.wait_for(state="detached", timeout=WAIT)
        assert await dead_count(redis_url) == 1
        await screenshot(page, SCREENSHOT)
    finally:
        console.kill()
        hive.popen.terminate()
        hive.wait(30)
    assert "Traceback" not in console.output, console.output


async def jobs_for_the_panel(url: str) -> str:
    """Seeded job records of every state, and a real job run by the hive's Worker (its id)."""
    await seed_jobs(url)
    async with QueueBroker.from_url(url, queues=[INVOICE]) as broker:
        job = await broker.submit(INVOICE.s(total=12))
        assert await job.result(timeout=30) == {"invoiced": 12}
        return job.id


async def see_task_and_consumer(page: Any, job_id: str) -> None:
    """The page lists the real job as succeeded, and the orders' one consumer (stats)."""
    await page.wait_for_selector(f'#jobs tr[data-job="{job_id}"] .state-succeeded', timeout=WAIT)
    consumers = page.locator('tr[data-queue="console_orders"] .consumers')
    assert await eventually(lambda: _is(consumers, "1"), timeout=30)


async def seed_jobs(url: str) -> None:
    """A few job records in the broker's result store: done, failed, running."""
    store = open_engine_store(url)
    now = time.time()
    try:
        for n, (state, changes) in enumerate(
            [
                (JobState.SUCCEEDED, {"result": b"{\"total\": 42}", "finished_at": now - 4}),
                (JobState.SUCCEEDED, {"result": b"7", "finished_at": now - 2}),
                (JobState.FAILED, {"error_type": "ValueError", "error_message": "no such order",
                                   "finished_at": now - 1}),
                (JobState.STARTED, {}),
            ],
            1,
        ):  # fmt: skip
            queue = "console_invoice" if n % 2 else "console_refund"
            await store.create(JobRecord(id=f"job-{n}", queue=queue, created_at=now - 6 + n))
            await store.transition(f"job-{n}", JobState.STARTED, {"started_at": now - 5 + n})
            if state is not JobState.STARTED:
                await store.transition(f"job-{n}", state, changes)
    finally:
        await store.close()


async def _at_least(url: str, count: int) -> bool:
    return await dead_count(url) >= count


async def _number(locator: Any) -> int | None:
    """The number a cell shows (the page uses no eval: its CSP would refuse it)."""
    text = await locator.text_content() if await locator.count() else None
    return int(text) if text is not None and re.fullmatch(r"[0-9]+", text) else None


async def _grew(locator: Any, above: int) -> bool:
    number = await _number(locator)
    return number is not None and number > above


async def _is(locator: Any, text: str) -> bool:
    return bool(await locator.count()) and await locator.text_content() == text
