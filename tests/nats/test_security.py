"""Users and passwords, tokens, TLS, and secrets kept out of errors, logs and reprs."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from microhive import MicroAgent, QueueBroker, SignalBus, TransportError, consumer, receiver

from .. import engines
from ..fault_agents import JOBS, PING

SECRET = "s3cret-Pass-word"
WRONG = "wr0ng-Pass-word"


class Echo(MicroAgent):
    @consumer(JOBS)
    async def job(self, n: int) -> None:
        self.settings["jobs"].append(n)

    @receiver(PING)
    async def ping(self, n: int) -> int:
        return n * 2


async def roundtrip(url: str) -> None:
    """A call and a queue message, through an agent on ``url``."""
    bus = SignalBus.from_url(url, signals=[PING])
    broker = QueueBroker.from_url(url, queues=[JOBS])
    agent = Echo(bus, broker, settings={"jobs": []})
    async with bus, broker, agent:
        assert await bus.ping.call("test", n=21, timeout=5) == 42
        await broker.jobs.send({"n": 7})
        async with asyncio.timeout(5):
            while agent.settings["jobs"] != [7]:  # noqa: ASYNC110 - the agent appends to a list
                await asyncio.sleep(0.01)


async def assert_refused_without_secret(url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for make in (SignalBus.from_url, QueueBroker.from_url):
        transport = make(url)
        assert WRONG not in repr(transport)
        with pytest.raises(TransportError) as caught:
            await transport.connect()  # a refusal is final: no retries until connect_timeout
        message = str(caught.value)
        assert WRONG not in message and "***" in message, message
        assert "authenticate" in message or "Authorization" in message, message
        assert not transport.connected
    assert WRONG not in caplog.text


async def test_user_and_password_work_and_a_wrong_password_is_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with engines.NatsServer(tmp_path / "nats", users={"app": SECRET}) as server:
        await roundtrip(f"nats://app:{SECRET}@127.0.0.1:{server.port}?prefix=auth")
        await assert_refused_without_secret(f"nats://app:{WRONG}@127.0.0.1:{server.port}", caplog)
    assert SECRET not in caplog.text


async def test_a_token_works_and_a_wrong_one_is_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with engines.NatsServer(tmp_path / "nats", token=SECRET) as server:
        await roundtrip(f"nats://{SECRET}@127.0.0.1:{server.port}")
        await assert_refused_without_secret(f"nats://{WRONG}@127.0.0.1:{server.port}", caplog)
    assert SECRET not in caplog.text


async def test_unreachable_server_error_names_the_url_without_password() -> None:
    port = engines.free_port()
    broker = QueueBroker.from_url(f"nats://app:{WRONG}@127.0.0.1:{port}?connect_timeout=0.5")
    with pytest.raises(TransportError, match=rf"nats://app:\*\*\*@127.0.0.1:{port}") as caught:
        await broker.connect()
    assert WRONG not in str(caught.value)


async def test_tls_with_a_password(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    certificates = engines.make_certificates(tmp_path / "tls")
    server = engines.NatsServer(tmp_path / "nats", users={"app": SECRET}, tls=certificates)
    server.start()
    try:
        ca = certificates["ca"]
        await roundtrip(f"tls://app:{SECRET}@127.0.0.1:{server.port}?tls_ca={ca}")
        await assert_refused_without_secret(
            f"tls://app:{WRONG}@127.0.0.1:{server.port}?tls_ca={ca}", caplog
        )
        with pytest.raises(TransportError) as caught:  # the server's certificate is unknown
            await QueueBroker.from_url(f"tls://app:{SECRET}@127.0.0.1:{server.port}").connect()
        assert SECRET not in str(caught.value)
    finally:
        server.stop()


async def test_missing_tls_files_are_a_clear_error() -> None:
    broker = QueueBroker.from_url(f"tls://app:{WRONG}@127.0.0.1:4222?tls_ca=/nonexistent/ca.pem")
    with pytest.raises(TransportError, match="cannot load the TLS files") as caught:
        await broker.connect()
    assert WRONG not in str(caught.value)
