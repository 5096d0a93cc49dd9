"""The feed's database: one table of events, written idempotently, through SQLAlchemy 2 async.

Queue delivery is at least once: a worker killed after its insert but before its ack gets
the message again (so does a publisher that retried a send). The table therefore has a
unique constraint on the message id, and :meth:`FeedStore.add` is an insert-or-ignore
(``ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL): a redelivered event changes nothing,
and the feed shows every event exactly once.

SQLite (``sqlite+aiosqlite:///feed.db``, the default) or PostgreSQL
(``postgresql+asyncpg://user@host/db``); ``postgresql://`` and ``sqlite:///`` URLs get
their async driver added.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateIndex, CreateTable

from .events import AnyEvent, Liked, describe

DEFAULT_DATABASE = "sqlite+aiosqlite:///feed.db"

metadata = MetaData()

feed_events = Table(
    "feed_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(200), nullable=False, unique=True),
    Column("kind", String(40), nullable=False),
    Column("sender", String(200), nullable=False, default=""),
    Column("sent_at", Float, nullable=False),
    Column("stored_at", Float, nullable=False),
    Column("target", String(200), nullable=True, index=True),
    Column("text", Text, nullable=False),
    Column("data", JSON, nullable=False),
)


DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def async_url(url: str) -> str:
    """``url`` with the async driver SQLAlchemy needs for it (``sqlite:///feed.db`` works)."""
    scheme, separator, rest = url.partition("://")
    return f"{DRIVERS.get(scheme, scheme)}://{rest}" if separator else url


@dataclass(frozen=True, slots=True)
class Item:
    """One event as the feed shows it."""

    id: int
    message_id: str
    kind: str
    sender: str
    sent_at: float
    text: str
    likes: int
    data: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "message_id": self.message_id,
            "kind": self.kind,
            "sender": self.sender,
            "sent_at": self.sent_at,
            "text": self.text,
            "likes": self.likes,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class Page:
    count: int
    items: list[Item]


class FeedStore:
    """The feed table on one database; :meth:`open` before use, :meth:`close` after."""

    def __init__(self, url: str = DEFAULT_DATABASE) -> None:
        self.url = async_url(url)
        self.engine: AsyncEngine = create_async_engine(self.url)
        if self.engine.dialect.name == "sqlite":
            # several worker processes may write one file: WAL lets readers go on, and a
            # writer waits for the lock (up to 30 s) instead of failing at once
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        elif self.engine.dialect.name != "postgresql":
            raise ValueError(
                f"the feed runs on SQLite or PostgreSQL, not {self.engine.dialect.name}"
            )

    def __repr__(self) -> str:
        return f"<FeedStore {self.engine.url.render_as_string(hide_password=True)}>"

    async def open(self) -> None:
        """Create the table and its indexes if they are not there yet.

        Worker processes starting together race to create them: ``IF NOT EXISTS`` settles
        that inside the database (a look first, then a create, as ``create_all`` does, left
        a window between the two). PostgreSQL can still fail one of two concurrent creates
        of a new table (its catalog's unique index): then the next attempt finds the table.
        """
        for attempt in range(3):
            try:
                async with self.engine.begin() as connection:
                    for table in metadata.sorted_tables:
                        await connection.execute(CreateTable(table, if_not_exists=True))
                        for index in table.indexes:
                            await connection.execute(CreateIndex(index, if_not_exists=True))
                return
            except DBAPIError:
                if attempt == 2:
                    raise

    async def close(self) -> None:
        await self.engine.dispose()

    async def add(self, message_id: str, event: AnyEvent, sender: str, sent_at: float) -> bool:
        """Store ``event`` unless its message id is already stored; True if it was new."""
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        async with self.engine.begin() as connection:
            text, target = describe(event), None
            if isinstance(event, Liked):
                target = event.event
                liked = await connection.scalar(
                    select(feed_events.c.text).where(feed_events.c.message_id == target)
                )
                if liked is not None:
                    text = f"{event.employee} liked “{liked}”"
            statement = (
                insert(feed_events)
                .values(
                    message_id=message_id,
                    kind=event.kind,
                    sender=sender,
                    sent_at=sent_at,
                    stored_at=time.time(),
                    target=target,
                    text=text,
                    data=event.model_dump(mode="json"),
                )
                .on_conflict_do_nothing(index_elements=["message_id"])
            )
            result = await connection.execute(statement)
            return bool(result.rowcount)

    async def latest(self, *, limit: int = 50, after: int = 0, oldest_first: bool = False) -> Page:
        """The newest ``limit`` events with an id above ``after``, newest first — or, with
        ``oldest_first``, the oldest of them, oldest first (what a follower needs next) — and
        how many events the feed has, in one statement, so the two agree."""
        liked, everything = feed_events.alias("liked"), feed_events.alias("everything")
        likes = (
            select(func.count())
            .where(liked.c.kind == "liked", liked.c.target == feed_events.c.message_id)
            .scalar_subquery()
        )
        total = select(func.count()).select_from(everything).scalar_subquery()
        statement = (
            select(feed_events, likes.label("likes"), total.label("total"))
            .where(feed_events.c.id > after)
            .order_by(feed_events.c.id.asc() if oldest_first else feed_events.c.id.desc())
            .limit(limit)
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        items = [
            Item(
                row.id,
                row.message_id,
                row.kind,
                row.sender,
                row.sent_at,
                row.text,
                row.likes,
                row.data,
            )
            for row in rows
        ]
        return Page(rows[0].total if rows else await self.count(), items)

    async def has(self, message_id: str) -> bool:
        async with self.engine.connect() as connection:
            found = await connection.scalar(
                select(feed_events.c.id).where(feed_events.c.message_id == message_id)
            )
        return found is not None

    async def count(self) -> int:
        async with self.engine.connect() as connection:
            return int(await connection.scalar(select(func.count()).select_from(feed_events)) or 0)

    async def message_ids(self) -> list[str]:
        """Every stored message id (one per row: the unique constraint sees to that)."""
        async with self.engine.connect() as connection:
            return list((await connection.scalars(select(feed_events.c.message_id))).all())


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
