"""Seed 004's dashboard in headless Chromium: it loads, shows the three satellites, follows
them live; a satellite killed (SIGKILL) while the page is open is shown silent while the
others go on, and resumes when it is restarted."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

from examples.telemetry.dashboard import slug
from examples.telemetry.readings import SATELLITES
from microhive.testing import eventually

from ..browser import screenshot
from .telemetry_support import (  # noqa: F401 - fixtures
    WAIT,
    address,
    dashboard,
    kafka_fixture,
    queue_fixture,
    satellite,
    stop_all,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "telemetry"
LAST = re.compile(r"(\d+) readings · last at (\d\d:\d\d:\d\d) UTC")


async def column(page: Any, name: str) -> dict[str, Any]:
    """What one satellite's column shows: its status line, and its graph's point count."""
    key = slug(name)
    status = await page.text_content(f"#{key}-status") or ""
    points = await page.evaluate(
        """key => {
            const plot = document.querySelector(`#${key}-graph .js-plotly-plot`);
            return plot && plot.data && plot.data[0] ? plot.data[0].x.length : 0;
        }""",
        key,
    )
    found = LAST.search(status)
    return {
        "status": status,
        "points": points,
        "last": found.group(2) if found else "",
        "live": status.startswith("live"),
        "silent": status.startswith("silent for"),
    }


async def columns(page: Any) -> dict[str, dict[str, Any]]:
    return {name: await column(page, name) for name in SATELLITES}


async def all_moving(page: Any, before: dict[str, dict[str, Any]], names: Any) -> bool:
    """Every one of ``names`` is live and has newer readings than ``before``."""
    now = await columns(page)
    return all(
        now[n]["live"] and now[n]["points"] > 0 and now[n]["last"] > before[n]["last"]
        for n in names
    )


async def test_the_dashboard_shows_the_satellites_live_on_memory(page: Any, queue: str) -> None:
    process = dashboard(queue)  # producers and dashboard in one process, memory://
    try:
        await page.goto(address(process))
        for name in SATELLITES:
            heading = page.get_by_role("heading", name=f"{name} Satellite Live Feed")
            await heading.wait_for(timeout=WAIT * 1000)
        first = await eventually(lambda: _all_live(page), WAIT)
        # the data changes live: more points, a later last reading, on every graph
        await eventually(lambda: all_moving(page, first, SATELLITES), WAIT)
        later = await columns(page)
        for name in SATELLITES:
            assert later[name]["points"] >= first[name]["points"]
            assert "Altitude:" in (await page.text_content(f"#{slug(name)}-text") or "")
        await eventually(lambda: _points_at_least(page, 15), WAIT * 2)
        await screenshot(page, EXAMPLE / "screenshot.png")
        os.kill(process.popen.pid, signal.SIGTERM)
        assert process.wait(WAIT) == 0  # the host stops the agents, the process exits cleanly
    finally:
        stop_all(process)


async def _all_live(page: Any) -> dict[str, dict[str, Any]] | None:
    now = await columns(page)
    return now if all(c["live"] and c["points"] > 0 for c in now.values()) else None


async def _points_at_least(page: Any, count: int) -> bool:
    return all(c["points"] >= count for c in (await columns(page)).values())


async def test_a_killed_satellite_goes_silent_and_resumes_on_kafka(
    page: Any, kafka: str, queue: str
) -> None:
    producers = {name: satellite(name, kafka, queue) for name in SATELLITES}
    board = dashboard(queue, "--broker", kafka, "--no-satellites")
    try:
        await page.goto(address(board))
        first = await eventually(lambda: _all_live(page), WAIT)
        await eventually(lambda: all_moving(page, first, SATELLITES), WAIT)

        producers["AQUA"].popen.send_signal(signal.SIGKILL)
        producers["AQUA"].wait(WAIT)
        silent = await eventually(lambda: _silent(page, "AQUA"), WAIT)
        others = [name for name in SATELLITES if name != "AQUA"]
        await eventually(lambda: all_moving(page, silent, others), WAIT)  # the others go on
        still = await columns(page)
        assert still["AQUA"]["silent"] and still["AQUA"]["last"] == silent["AQUA"]["last"]
        assert still["AQUA"]["points"] == silent["AQUA"]["points"]  # its history stays shown
        await screenshot(page, EXAMPLE / "screenshot-silent.png")

        producers["AQUA"] = satellite("AQUA", kafka, queue)  # restarted
        await eventually(lambda: all_moving(page, silent, SATELLITES), WAIT)
    finally:
        stop_all(board, *producers.values())


async def _silent(page: Any, name: str) -> dict[str, dict[str, Any]] | None:
    now = await columns(page)
    return now if now[name]["silent"] else None
