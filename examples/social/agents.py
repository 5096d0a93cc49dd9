"""The seed talk's ecosystem: users come and go, write posts, mention each other.

Flow of one post::

    SourceAgent --post(signal)--> PostAgent --queue "post"--> PostAgent (stores it)
        --new_post(signal)--> MentionAgent --check_user(call)--> UserAgent
        MentionAgent --queue "email" (for offline users)--> EmailAgent
    StatsAgent counts the signals and reports them periodically and on a cron schedule.

Agent settings (``[microhive.agents.<Class>]`` in a ``--config`` TOML file):

* SourceAgent: ``seed`` (int, repeatable demo), ``users`` (list of names),
  ``max_online`` (int).
* MentionAgent: ``call_timeout`` (seconds to wait for ``check_user``).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

from microhive import (
    CallError,
    MicroAgent,
    Signal,
    consumer,
    cron,
    load_stuff,
    on,
    periodic,
    receiver,
)

CATALOG = load_stuff(Path(__file__).resolve().parent / "signals.json")
signals, queues = CATALOG

DEFAULT_USERS = ("ann", "bob", "carol", "dave", "erin")
TOPICS = (
    "lunch?",
    "the build is green again",
    "look at this cat",
    "release notes are out",
    "who broke staging",
    "coffee in five",
)
MENTION = re.compile(r"@(\w+)")


class SourceAgent(MicroAgent):
    """A tiny built-in world, so the demo does something on its own.

    Every second somebody may come online or leave, and an online user writes a post that
    mentions one or two other users (online or not) with ``@name``.
    """

    catalog = CATALOG  # sends user_enter, user_exit and post without receiving them

    @on("pre_start")
    def setup(self) -> None:
        self.users: list[str] = list(self.settings.get("users", DEFAULT_USERS))
        if len(self.users) < 2:
            raise ValueError("SourceAgent needs at least two users")
        self.max_online: int = int(self.settings.get("max_online", 3))
        self.random = random.Random(self.settings.get("seed"))
        self.online: set[str] = set()
        self.ticks = 0

    @periodic(1, timeout=5)
    async def tick(self) -> None:
        self.ticks += 1
        offline = [u for u in self.users if u not in self.online]
        if not self.online or (
            offline and len(self.online) < self.max_online and self.random.random() < 0.4
        ):
            name = self.random.choice(offline)
            self.online.add(name)
            self.log.info("world: %s comes online", name)
            await self.bus.user_enter.send("source_agent", name=name)
        elif len(self.online) > 1 and self.random.random() < 0.3:
            name = self.random.choice(sorted(self.online))
            self.online.discard(name)
            self.log.info("world: %s goes offline", name)
            await self.bus.user_exit.send("source_agent", name=name)

        author = self.random.choice(sorted(self.online))
        others = [u for u in self.users if u != author]
        mentioned = self.random.sample(others, k=min(len(others), self.random.randint(1, 2)))
        text = f"{self.random.choice(TOPICS)} " + " ".join(f"@{m}" for m in mentioned)
        self.log.info("world: %s writes %r", author, text)
        await self.bus.post.send("source_agent", user=author, text=text)


class UserAgent(MicroAgent):
    """Knows who is online (from user_enter / user_exit) and answers ``check_user``."""

    @on("pre_start")
    def setup(self) -> None:
        self.users: set[str] = set()

    @receiver(signals.user_enter, signals.user_exit, timeout=10)  # two signals, one handler
    async def update_users(self, signal: Signal, name: str, **kw: Any) -> None:
        if signal == signals.user_enter:
            self.users.add(name)
            self.log.info("User enter: %s", name)
        if signal == signals.user_exit:
            self.users.discard(name)
            self.log.info("User exit: %s", name)

    @periodic(2, timeout=1)
    async def users_watcher(self) -> None:
        self.log.info("users watcher: online %s", ", ".join(sorted(self.users)) or "nobody")

    @on("error_users_watcher")
    def watcher_failed(self, exc: BaseException, **kw: Any) -> None:
        self.log.error("users watcher failed: %s", exc)

    @receiver(signals.check_user)  # a call: the returned value is the answer
    async def check_user(self, user: str, **kw: Any) -> bool:
        online = user in self.users
        self.log.info("check_user(%s) -> %s", user, online)
        return online


class PostAgent(MicroAgent):
    """Turns ``post`` signals into durable queue messages, stores them, announces ``new_post``."""

    catalog = CATALOG  # sends to queue "post" and signal new_post

    @on("pre_start")
    def setup(self) -> None:
        self.posts: dict[int, dict[str, Any]] = {}
        self.counter = 0

    @receiver(signals.post)
    async def post_handler(self, user: str, text: str, **kw: Any) -> None:
        self.log.info("Catch post from %s: %s", user, text)
        await self.broker.post.send({"user": user, "text": text}, sender=self.name)

    @consumer(queues.post, timeout=10, retries=3, backoff=0.5)
    async def store_post(self, user: str, text: str, **kw: Any) -> None:
        self.counter += 1
        post_id = self.counter
        self.posts[post_id] = {"user": user, "text": text}
        self.log.info("Stored post #%d by %s (queue message)", post_id, user)
        await self.bus.new_post.send("post_agent", post_id=post_id, user=user, text=text)


class MentionAgent(MicroAgent):
    """Finds ``@mentions`` in new posts; offline users get an e-mail through queue "email"."""

    catalog = CATALOG  # calls check_user and sends to queue "email"

    @receiver(signals.new_post, timeout=30)
    async def find_mentions(self, post_id: int, user: str, text: str, **kw: Any) -> None:
        timeout = float(self.settings.get("call_timeout", 5))
        for name in dict.fromkeys(MENTION.findall(text)):  # unique, in order
            if name == user:
                continue
            try:
                online = await self.bus.check_user.call("mention_agent", user=name, timeout=timeout)
            except CallError as exc:
                self.log.warning("cannot check %s: %s; no notification", name, exc)
                continue
            if online:
                self.log.info("Mention of %s in post #%d: online, no e-mail", name, post_id)
            else:
                self.log.info("Mention of %s in post #%d: offline, e-mail queued", name, post_id)
                await self.broker.email.send(
                    {"to": name, "post_id": post_id, "author": user, "text": text},
                    sender=self.name,
                )


class EmailAgent(MicroAgent):
    """ "Sends" e-mails by logging them."""

    @on("pre_start")
    def setup(self) -> None:
        self.sent: list[dict[str, Any]] = []

    @consumer(queues.email, timeout=10, retries=3, backoff=0.5)
    async def send_email(self, to: str, post_id: int, author: str, text: str, **kw: Any) -> None:
        self.sent.append({"to": to, "post_id": post_id, "author": author, "text": text})
        self.log.info("E-mail to %s: %s mentioned you in post #%d: %s", to, author, post_id, text)


class StatsAgent(MicroAgent):
    """Counts signals; reports hourly and every minute (cron) and every 5 s (periodic).

    It does not receive ``check_user``: a receiver of a call answers it, and its answer
    could arrive before UserAgent's.
    """

    @on("pre_start")
    def setup(self) -> None:
        self.counts: Counter[str] = Counter()
        self.reported: dict[str, int] = {"hour": 0, "minute": 0}
        self.log.info("stats: starting")

    @receiver(signals.post, signals.user_enter, signals.user_exit, signals.new_post)
    async def count(self, signal: Signal, **kw: Any) -> None:
        self.counts[signal.name] += 1

    def report(self, period: str) -> str:
        posts = self.counts["new_post"]
        text = f"{posts - self.reported[period]} new post(s) in the last {period}"
        self.reported[period] = posts
        return text

    @cron("0 * * * *", timeout=30)  # every hour, on the hour
    async def hourly_report(self) -> None:
        self.log.info("cron report: %s", self.report("hour"))

    @cron("* * * * *", timeout=30)  # every minute: visible in a short demo
    async def minute_report(self) -> None:
        self.log.info("cron report: %s", self.report("minute"))

    @periodic(5, timeout=5)
    async def summary(self) -> None:
        counted = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "nothing yet"
        self.log.info("stats summary: %s", counted)

    @on("post_stop")
    def shutdown(self) -> None:
        self.log.info("stats: stopped after %d signal(s)", sum(self.counts.values()))
