"""connect(): how long it keeps trying (``connect_timeout``), and where it connects to
(TCP, a Unix socket)."""

from __future__ import annotations

from pathlib import Path

import pytest

from microhive import QueueBroker
from microhive.transports.links import CONNECT_TIMEOUT, LinkDown
from microhive.transports.redis import parse

from .. import engines
from ..scenarios import REDIS, recovery


def test_connect_timeout_defaults_to_the_shared_budget() -> None:
    assert parse("redis://").connect_timeout == CONNECT_TIMEOUT
    assert parse("redis://?connect_timeout=2.5").connect_timeout == 2.5


async def test_a_dead_port_raises_link_down_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = engines.free_port()
    for message in await recovery.connect_to_a_dead_port_gives_up_with_link_down(
        REDIS, port, caplog
    ):
        assert f"cannot connect to redis://app:***@127.0.0.1:{port}/0" in message, message


async def test_a_server_that_comes_up_within_the_budget_is_connected_to(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await recovery.a_server_that_comes_up_within_the_budget_is_connected_to(REDIS, tmp_path, caplog)


async def test_no_sentinel_answering_raises_link_down_without_the_password() -> None:
    port = engines.free_port()
    url = f"redis+sentinel://:pw-never-shown@127.0.0.1:{port}/hive?connect_timeout=0.5"
    with pytest.raises(LinkDown) as raised:
        await QueueBroker.from_url(url).connect()
    message = str(raised.value)
    assert "no Sentinel named the master" in message and f"127.0.0.1:{port}" in message
    assert "pw-never-shown" not in message
