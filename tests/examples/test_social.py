"""The social example on a private memory hive: users, posts, mentions, e-mails, statistics."""

from __future__ import annotations

import logging

import pytest

from examples.social.agents import (
    CATALOG,
    EmailAgent,
    MentionAgent,
    PostAgent,
    SourceAgent,
    StatsAgent,
    UserAgent,
)
from microhive import CallTimeout
from microhive.testing import run_agents

TIMEOUT = 5.0


async def test_user_who_enters_is_online_and_check_user_answers() -> None:
    async with run_agents(UserAgent, catalog=CATALOG) as hive:
        users = hive.agent(UserAgent)
        assert await hive.bus.check_user.call("test", user="ann", timeout=TIMEOUT) is False

        await hive.bus.user_enter.send("test", name="ann")
        await hive.wait_for(lambda: "ann" in users.users, TIMEOUT)
        assert await hive.bus.check_user.call("test", user="ann", timeout=TIMEOUT) is True
        assert await hive.bus.check_user.call("test", user="bob", timeout=TIMEOUT) is False

        await hive.bus.user_exit.send("test", name="ann")
        await hive.wait_for(lambda: "ann" not in users.users, TIMEOUT)
        assert await hive.bus.check_user.call("test", user="ann", timeout=TIMEOUT) is False


async def test_users_watcher_logs_who_is_online(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="microhive.agent.UserAgent")
    async with run_agents(UserAgent, catalog=CATALOG) as hive:
        users = hive.agent(UserAgent)
        await hive.bus.user_enter.send("test", name="ann")
        await hive.wait_for(lambda: "ann" in users.users, TIMEOUT)
        await users.users_watcher()  # the periodic job, run once more on demand
    assert "users watcher: online ann" in caplog.messages


async def test_post_in_queue_produces_new_post_signal() -> None:
    async with run_agents(PostAgent, catalog=CATALOG) as hive:
        recorder = await hive.record("new_post")
        await hive.broker.post.send({"user": "ann", "text": "hello @bob"})
        envelopes = await recorder.wait(1, TIMEOUT)
        await hive.drain("post", TIMEOUT)
        posts = hive.agent(PostAgent).posts
    assert [e.payload for e in envelopes] == [{"post_id": 1, "user": "ann", "text": "hello @bob"}]
    assert envelopes[0].sender == "post_agent"
    assert posts == {1: {"user": "ann", "text": "hello @bob"}}


async def test_post_signal_goes_through_the_queue() -> None:
    async with run_agents(PostAgent, catalog=CATALOG) as hive:
        recorder = await hive.record("new_post")
        await hive.bus.post.send("test", user="ann", text="first")
        await hive.bus.post.send("test", user="bob", text="second")
        envelopes = await recorder.wait(2, TIMEOUT)
        await hive.drain("post", TIMEOUT)
    assert [(e.payload["post_id"], e.payload["user"]) for e in envelopes] == [
        (1, "ann"),
        (2, "bob"),
    ]


async def test_mention_of_offline_user_sends_email() -> None:
    agents = (UserAgent, PostAgent, MentionAgent, EmailAgent)
    async with run_agents(*agents, catalog=CATALOG) as hive:
        users, email = hive.agent(UserAgent), hive.agent(EmailAgent)
        calls = await hive.record("check_user")
        for name in ("ann", "carol"):
            await hive.bus.user_enter.send("test", name=name)
        await hive.wait_for(lambda: users.users == {"ann", "carol"}, TIMEOUT)

        # carol (the author, online) mentions ann (online), bob (offline) and herself
        await hive.bus.post.send("test", user="carol", text="hi @ann and @bob, says @carol")
        await hive.wait_for(lambda: email.sent, TIMEOUT)
        await hive.drain("post", TIMEOUT)
        await hive.drain("email", TIMEOUT)
        # mentions are checked in order, so ann's (no e-mail) was decided before bob's e-mail
        assert email.sent == [
            {"to": "bob", "post_id": 1, "author": "carol", "text": "hi @ann and @bob, says @carol"}
        ]
        assert [e.payload for e in calls.envelopes] == [{"user": "ann"}, {"user": "bob"}]


async def test_mention_without_user_agent_logs_and_sends_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="microhive.agent.MentionAgent")
    settings = {"MentionAgent": {"call_timeout": 0.1}}
    async with run_agents(MentionAgent, catalog=CATALOG, settings=settings) as hive:
        await hive.bus.new_post.send("test", post_id=1, user="ann", text="@bob")
        await hive.wait_for(lambda: any("cannot check bob" in m for m in caplog.messages))
        assert await hive.broker.email.length() == 0


async def test_stats_agent_counts_signals(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="microhive.agent.StatsAgent")
    async with run_agents(StatsAgent, catalog=CATALOG) as hive:
        stats = hive.agent(StatsAgent)
        await hive.bus.user_enter.send("test", name="ann")
        await hive.bus.user_enter.send("test", name="bob")
        await hive.bus.user_exit.send("test", name="bob")
        await hive.bus.post.send("test", user="ann", text="x")
        for post_id in (1, 2, 3):
            await hive.bus.new_post.send("test", post_id=post_id, user="ann", text="x")
        expected = {"user_enter": 2, "user_exit": 1, "post": 1, "new_post": 3}
        await hive.wait_for(lambda: stats.counts == expected, TIMEOUT)

        # StatsAgent does not receive (so does not answer) the check_user call
        with pytest.raises(CallTimeout):
            await hive.bus.check_user.call("test", user="ann", timeout=0.1)

        await stats.minute_report()
        await stats.hourly_report()
        await hive.bus.new_post.send("test", post_id=4, user="ann", text="x")
        await hive.wait_for(lambda: stats.counts["new_post"] == 4, TIMEOUT)
        await stats.minute_report()
        await stats.summary()
    assert "cron report: 3 new post(s) in the last minute" in caplog.messages
    assert "cron report: 3 new post(s) in the last hour" in caplog.messages
    assert "cron report: 1 new post(s) in the last minute" in caplog.messages
    assert "stats summary: new_post=4, post=1, user_enter=2, user_exit=1" in caplog.messages
    assert "stats: starting" in caplog.messages  # pre_start hook
    assert "stats: stopped after 8 signal(s)" in caplog.messages  # post_stop hook


async def test_seeded_source_drives_the_whole_system() -> None:
    settings = {"SourceAgent": {"seed": 3, "users": ["ann", "bob"]}}
    agents = (UserAgent, PostAgent, MentionAgent, EmailAgent, StatsAgent, SourceAgent)
    async with run_agents(*agents, catalog=CATALOG, settings=settings) as hive:
        email, stats = hive.agent(EmailAgent), hive.agent(StatsAgent)
        # the first tick brings one user online, who mentions the other one (offline)
        await hive.wait_for(lambda: email.sent, TIMEOUT)
        source = hive.agent(SourceAgent)
        first = email.sent[0]
        assert first["post_id"] == 1
        assert {first["to"], first["author"]} == {"ann", "bob"}
        assert stats.counts["user_enter"] >= 1
        assert stats.counts["new_post"] >= 1
        assert source.ticks >= 1
