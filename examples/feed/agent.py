"""The feed worker: takes events from the queue and writes them into the feed's database.

Run it on its own (as many processes as you like; they share the queue's messages)::

    FEED_DATABASE_URL=sqlite:///feed.db \\
        microhive run examples.feed.agent:FeedAgent --transport amqp://guest:guest@127.0.0.1/

The database comes from the agent's settings (``database``, in ``microhive run --config``'s
``[microhive.agents.FeedAgent]``), else ``FEED_DATABASE_URL``, else ``feed.db`` here.
"""

from __future__ import annotations

import os

from microhive import MicroAgent, Retry, consumer, current_message, on

from .events import Event, Liked, queues
from .store import DEFAULT_DATABASE, FeedStore

FIXES = "x-fixes"
"""Header of an event an operator fixed by hand on the admin page: the message id of the
dead letter it replaces, which the feed keeps as the event's id (so it is stored once)."""


class FeedAgent(MicroAgent):
    """Writes each event of the queue into the feed once, however often it is delivered.

    An event of a bad shape never reaches :meth:`record`: the queue's schema fails and
    microhive dead-letters it with the validation error (see the admin page). A like of an
    event the feed does not have yet is tried again a few times (the liked event may be on
    its way through another worker), then dead-lettered as well.
    """

    store: FeedStore

    @on("pre_start")
    async def open_store(self) -> None:
        given = self.settings.get("store")
        if isinstance(given, FeedStore):  # the one-process demo shares its store
            self.store, self._owns_store = given, False
            return
        url = self.settings.get("database") or os.environ.get("FEED_DATABASE_URL")
        self.store, self._owns_store = FeedStore(url or DEFAULT_DATABASE), True
        await self.store.open()
        self.log.info("writing the feed to %r", self.store)

    @on("post_stop")
    async def close_store(self) -> None:
        if self._owns_store:
            await self.store.close()

    @consumer(queues.events, concurrency=8, retries=4, backoff=0.5, timeout=30)
    async def record(self, event: Event) -> None:
        message = current_message()
        assert message is not None  # always set inside a consumer
        message_id = message.headers.get(FIXES) or message.id
        item = event.root
        if isinstance(item, Liked) and not await self.store.has(item.event):
            raise Retry(f"liked event {item.event!r} is not in the feed")
        if await self.store.add(message_id, item, message.sender, message.sent_at):
            self.log.info("%s: %s", item.kind, message_id)
        else:
            self.log.info("already in the feed: %s (delivered again)", message_id)
