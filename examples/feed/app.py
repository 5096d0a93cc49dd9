"""The example's web apps, each with what it needs started in its lifespan.

- :func:`registrar_app`: the registrar's API (a broker and a synchronous publisher).
- :func:`page_app`: the feed page, its JSON and the admin page (the database, and a broker
  for the dead letters and the like button).
- :func:`demo_app`: all of it and the feed worker in one process — on ``memory://`` the
  only way, since a memory hive lives in one event loop.

Each takes the broker URL (``memory://``, ``amqp://...``) and, where it reads the feed, the
database URL.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from microhive import QueueBroker

from . import admin, registrar, web
from .agent import FeedAgent
from .events import EVENTS
from .store import DEFAULT_DATABASE, FeedStore

GRACE_PERIOD = 10.0
"""Seconds the demo's feed worker gets to finish its events at shutdown."""


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[QueueBroker]:
    """A broker with the feed's queue declared, so plain publishers (the seed's pika
    code) can send to it before any worker ran."""
    broker = QueueBroker.from_url(url, queues=[EVENTS])
    try:
        await broker.connect()
        await broker.declare()
        yield broker
    finally:
        await broker.close()


@contextlib.asynccontextmanager
async def opened(database: str) -> AsyncIterator[FeedStore]:
    store = FeedStore(database)
    try:
        await store.open()
        yield store
    finally:
        await store.close()


def registrar_app(url: str) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with connected(url) as broker:
            app.state.broker = broker
            app.state.publisher = registrar.sync_sender(url, broker)
            try:
                yield
            finally:
                app.state.publisher.close()

    app = FastAPI(title="Registrar", lifespan=lifespan)
    app.include_router(registrar.router)
    app.include_router(registrar.likes)
    return app


def page_app(url: str, database: str = DEFAULT_DATABASE) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with connected(url) as broker, opened(database) as store:
            app.state.broker, app.state.store, app.state.sender = broker, store, "feed-page"
            yield

    return _with_pages(FastAPI(title="Company feed", lifespan=lifespan))


def demo_app(url: str = "memory://", database: str = DEFAULT_DATABASE, **agent: Any) -> FastAPI:
    """Registrar, worker, page and admin in one app. ``agent``: more settings of the
    worker."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with connected(url) as broker, opened(database) as store:
            settings = {**agent, "store": store}
            worker = FeedAgent(broker=broker, settings=settings, grace_period=GRACE_PERIOD)
            app.state.broker, app.state.store, app.state.worker = broker, store, worker
            app.state.publisher = registrar.sync_sender(url, broker)
            try:
                async with worker:
                    yield
            finally:
                app.state.publisher.close()

    app = FastAPI(title="Company feed (one process)", lifespan=lifespan)
    app.include_router(registrar.router)
    return _with_pages(app)


def _with_pages(app: FastAPI) -> FastAPI:
    app.include_router(registrar.likes)
    app.include_router(web.router)
    app.include_router(admin.router)
    return app
