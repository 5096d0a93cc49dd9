"""Recovery inside one process: the shared scenarios (tests/scenarios/recovery.py) on NATS,
and nats-py's callbacks when its internals are unknown."""

from __future__ import annotations

from pathlib import Path

import pytest

from microhive import QueueBroker, SignalBus

from .. import engines
from ..fault_agents import JOBS, PING
from ..scenarios import NATS, Server, recovery
from ..scenarios.recovery import Agent, until


async def _length_is(broker: QueueBroker, expected: int) -> bool:
    return await broker.length(JOBS) == expected


async def test_server_restart_then_everything_goes_on(
    private_nats: Server, caplog: pytest.LogCaptureFixture
) -> None:
    await recovery.server_restart_then_everything_goes_on(NATS, private_nats, caplog)


async def test_server_that_lost_everything_gets_streams_and_consumers_again(
    private_nats: Server,
) -> None:
    await recovery.server_that_lost_everything_gets_its_queues_again(NATS, private_nats)


async def test_connect_keeps_trying_for_connect_timeout_then_raises_link_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """connect_timeout is the whole budget of connect(), retries included (dead port)."""
    port = engines.free_port()
    for message in await recovery.connect_to_a_dead_port_gives_up_with_link_down(
        NATS, port, caplog
    ):
        assert f"cannot connect to nats://app:***@127.0.0.1:{port}" in message, message
        assert "(tried for 1 s)" in message, message


async def test_a_server_that_comes_up_within_the_budget_is_connected_to(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await recovery.a_server_that_comes_up_within_the_budget_is_connected_to(NATS, tmp_path, caplog)


async def test_a_long_handler_keeps_its_message(nats_url: str) -> None:
    """In-progress acks keep a message held longer than ack_wait from a second delivery."""
    await recovery.a_long_handler_keeps_its_message(engines.with_query(nats_url, ack_wait=0.4))


async def test_works_on_nats_py_callbacks_when_its_internals_are_unknown(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hand-over straight from nats-py's parser is an optimisation with a fallback."""
    from nats.aio.client import Client

    from microhive.transports.nats import internals

    monkeypatch.setattr(internals, "client_class", lambda: Client)
    bus, broker = SignalBus.from_url(nats_url), QueueBroker.from_url(nats_url)
    agent = Agent(bus, broker, settings={"jobs": [], "pings": []})
    async with bus, broker, agent:
        assert not hasattr(broker._link.client, "direct")  # type: ignore[attr-defined]
        await broker.send(JOBS, {"n": 1}, delay=0.2)
        assert await bus.signal(PING).call("test", n=3, timeout=5) == 3
        await until(lambda: agent.settings["jobs"] == [1])
        await until(lambda: _length_is(broker, 0))
