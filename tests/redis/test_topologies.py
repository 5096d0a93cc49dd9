"""Where a link connects to besides host:port: a Unix socket, and the master that Sentinel
names — found again after a failover."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from microhive import MicroAgent, QueueBroker, SignalBus, consumer, receiver
from microhive.testing import eventually

from ..fault_agents import JOBS, PING
from .servers import Replica, Sentinel, UnixRedis


class Agent(MicroAgent):
    @consumer(JOBS)
    async def job(self, n: int) -> None:
        self.settings["jobs"].append(n)

    @receiver(PING)
    async def ping(self, n: int) -> int:
        return n + 1


async def test_unix_socket(tmp_path: Path) -> None:
    server = UnixRedis(tmp_path / "redis", password="unix-secret")
    server.start()
    try:
        url = f"redis+unix://:unix-secret@{server.socket}?db=1&prefix=unix:"
        bus, broker = SignalBus.from_url(url, signals=[PING]), QueueBroker.from_url(url)
        agent = Agent(bus, broker, settings={"jobs": []})
        async with bus, broker, agent:
            assert await bus.ping.call("test", n=1, timeout=10) == 2
            await broker.send(JOBS, {"n": 7})
            await eventually(lambda: agent.settings["jobs"] == [7], 30)
        client = aioredis.Redis(unix_socket_path=str(server.socket), password="unix-secret", db=1)
        try:  # it was that server, that database
            assert await client.exists("unix:queue:jobs") == 1
        finally:
            await client.aclose()
    finally:
        server.stop()


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[Sentinel, Any, Any]]:
    master = UnixRedis(tmp_path / "master")
    master.start()
    replica = Replica(tmp_path / "replica", master.port)
    replica.start()
    watcher = Sentinel(tmp_path / "sentinel", "hive", master.port)
    try:
        watcher.start()
        yield watcher, master, replica
    finally:
        watcher.stop()
        replica.stop()
        master.stop()


async def _in_sync(port: int) -> bool:
    client = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        info = await client.info("replication")
        return info.get("master_link_status") == "up"
    finally:
        await client.aclose()


async def test_sentinel_names_the_master_and_a_failover_is_followed(
    sentinel: tuple[Sentinel, Any, Any],
) -> None:
    watcher, master, replica = sentinel
    await eventually(lambda: _in_sync(replica.port), 30)
    await eventually(lambda: watcher.ask("SENTINEL", "REPLICAS", "hive"), 30)
    url = f"redis+sentinel://127.0.0.1:{watcher.port}/hive?claim_idle=1&prefix=failover:"
    bus, broker = SignalBus.from_url(url, signals=[PING]), QueueBroker.from_url(url)
    agent = Agent(bus, broker, settings={"jobs": []})
    async with bus, broker, agent:
        await broker.send(JOBS, {"n": 1})
        await eventually(lambda: agent.settings["jobs"] == [1], 30)
        async with aioredis.Redis(host="127.0.0.1", port=master.port) as admin:
            assert await admin.execute_command("WAIT", 1, 10_000) == 1  # the group replicated
        master.kill()
        await broker.send(JOBS, {"n": 2})  # waits through the failover (retry_timeout)
        assert watcher.master_port() == replica.port, "sent to the promoted replica"
        await eventually(lambda: agent.settings["jobs"] == [1, 2], 60)
        await eventually(lambda: _answers(bus), 60)


async def _answers(bus: SignalBus) -> bool:
    try:
        return bool(await bus.signal(PING).call("test", n=1, timeout=2) == 2)
    except Exception:
        return False
