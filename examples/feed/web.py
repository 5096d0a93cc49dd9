"""The feed service: the feed as a page that updates itself, and as JSON.

``GET /`` is the page; ``GET /api/feed`` the newest events as JSON (``?after=ID`` for what
came since); ``GET /api/feed/stream`` the same as server-sent events, which the page follows
to show new events as the worker stores them. The stream reads the database (a cheap
indexed query every half second) rather than the queue: the database is the feed, and any
number of page processes can serve it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from .store import FeedStore

POLL = 0.5
"""Seconds between two looks at the database for the live stream."""

TEMPLATES = Path(__file__).parent / "templates"
PAGE = (TEMPLATES / "feed.html").read_text()
STYLE = (TEMPLATES / "feed.css").read_text()


def store_of(request: Request) -> FeedStore:
    store: FeedStore = request.app.state.store
    return store


Store = Annotated[FeedStore, Depends(store_of)]

router = APIRouter(tags=["feed"])


@router.get("/", response_class=HTMLResponse)
async def page() -> str:
    return PAGE


@router.get("/static/feed.css")
async def style() -> Response:
    return Response(STYLE, media_type="text/css")


@router.get("/api/feed")
async def feed(
    store: Store,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """The newest events (with an id above ``after``), newest first, and how many in all."""
    page = await store.latest(limit=limit, after=after)
    return {"count": page.count, "items": [item.as_json() for item in page.items]}


@router.get("/api/feed/stream")
async def stream(
    request: Request, store: Store, after: Annotated[int, Query(ge=0)] = 0
) -> StreamingResponse:
    """Server-sent events: one ``data:`` line per new event, oldest first."""

    resumed = request.headers.get("last-event-id", "")
    start = max(after, int(resumed) if resumed.isdigit() else 0)  # a reconnecting browser

    async def events() -> AsyncIterator[str]:
        last, idle = start, 0
        yield "retry: 1000\n\n"
        while not await request.is_disconnected():
            items = (await store.latest(limit=200, after=last, oldest_first=True)).items
            for item in items:
                last = max(last, item.id)
                yield f"id: {item.id}\ndata: {json.dumps(item.as_json())}\n\n"
            if items:
                continue
            idle += 1
            if idle % 30 == 0:
                yield ": idle\n\n"  # a comment line now and then keeps proxies from closing it
            await asyncio.sleep(POLL)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
