"""connect(): how long it keeps trying (``connect_timeout``), and where it connects to
(TCP, a Unix socket)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from microhive import QueueBroker, SignalBus
from microhive.errors import TransportError
from microhive.testing import eventually
from microhive.transports.links import CONNECT_TIMEOUT, LinkDown
from microhive.transports.redis import parse

from .. import engines
from ..fault_agents import JOBS


def test_connect_timeout_defaults_to_the_shared_budget() -> None:
    assert parse("redis://").connect_timeout == CONNECT_TIMEOUT
    assert parse("redis://?connect_timeout=2.5").connect_timeout == 2.5


async def test_a_dead_port_raises_link_down_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "microhive")
    port = engines.free_port()
    url = f"redis://app:pw-never-shown@127.0.0.1:{port}/0?connect_timeout=1"
    for transport in (SignalBus.from_url(url), QueueBroker.from_url(url)):
        with pytest.raises(LinkDown) as raised:
            await transport.connect()
        assert isinstance(raised.value, TransportError)
        message = str(raised.value)
        assert f"cannot connect to redis://app:***@127.0.0.1:{port}/0" in message
        assert "pw-never-shown" not in message
    assert "retrying" in caplog.text, "it tried again before giving up"
    assert "pw-never-shown" not in caplog.text


async def test_a_server_that_comes_up_within_the_budget_is_connected_to(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "microhive")
    server = engines.RedisServer(tmp_path / "redis")
    url = engines.with_query(server.url, connect_timeout=60)
    broker, bus = QueueBroker.from_url(url, queues=[JOBS]), SignalBus.from_url(url)
    connecting = asyncio.gather(broker.connect(), bus.connect())
    try:
        await eventually(lambda: "retrying" in caplog.text, 30)  # refused at least once
        assert not connecting.done()
        await asyncio.to_thread(server.start)
        await connecting
        await broker.send(JOBS, {"n": 1})
        assert await broker.length(JOBS) == 1
    finally:
        await bus.close()
        await broker.close()
        server.stop()


async def test_no_sentinel_answering_raises_link_down_without_the_password() -> None:
    port = engines.free_port()
    url = f"redis+sentinel://:pw-never-shown@127.0.0.1:{port}/hive?connect_timeout=0.5"
    with pytest.raises(LinkDown) as raised:
        await QueueBroker.from_url(url).connect()
    message = str(raised.value)
    assert "no Sentinel named the master" in message and f"127.0.0.1:{port}" in message
    assert "pw-never-shown" not in message
