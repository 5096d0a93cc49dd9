"""TLS (``rediss://``), ACL users, and passwords kept out of errors, logs and reprs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from microhive import (
    ConfigurationError,
    MicroAgent,
    QueueBroker,
    SignalBus,
    TransportError,
    consumer,
    receiver,
)
from microhive.testing import eventually

from .. import engines
from ..fault_agents import JOBS, PING

SECRET = "s3cret-Pass-word"
WRONG = "wr0ng-Pass-word"
# an ACL user limited to its own keys and channels, without CLIENT UNBLOCK (@dangerous)
USER = f"app on >{SECRET} ~acl:* &acl:* +@all -@dangerous"


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
        assert await bus.ping.call("test", n=21, timeout=30) == 42
        await broker.jobs.send({"n": 7})
        await eventually(lambda: agent.settings["jobs"] == [7], 30)


@pytest.fixture
def acl_redis(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = engines.RedisServer(tmp_path / "redis", users=["default off", USER])
    server.start()
    yield server
    server.stop()


async def assert_refused_without_secret(url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for make in (SignalBus.from_url, QueueBroker.from_url):
        transport = make(url)
        assert WRONG not in repr(transport)
        with pytest.raises(TransportError) as caught:
            await transport.connect()
        message = str(caught.value)
        assert WRONG not in message and "***" in message, message
        assert "authenticate" in message or "WRONGPASS" in message or "invalid" in message
        assert not transport.connected
    assert WRONG not in caplog.text


async def test_acl_user_works_and_a_wrong_password_is_never_shown(
    acl_redis: engines.RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    good = f"redis://app:{SECRET}@127.0.0.1:{acl_redis.port}/0?prefix=acl:&block=0.2"
    await roundtrip(good)
    bad = f"redis://app:{WRONG}@127.0.0.1:{acl_redis.port}/0?prefix=acl:"
    await assert_refused_without_secret(bad, caplog)
    assert SECRET not in caplog.text


async def test_unreachable_server_error_names_the_url_without_password() -> None:
    port = engines.free_port()
    broker = QueueBroker.from_url(f"redis://app:{WRONG}@127.0.0.1:{port}/0")
    with pytest.raises(TransportError, match=rf"redis://app:\*\*\*@127.0.0.1:{port}/0") as caught:
        await broker.connect()
    assert WRONG not in str(caught.value)


def test_a_password_in_the_query_string_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigurationError) as caught:
        QueueBroker.from_url(f"redis://127.0.0.1:6379/0?password={WRONG}")
    assert WRONG not in str(caught.value)


async def test_tls_with_an_acl_user(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    certificates = engines.make_certificates(tmp_path / "tls")
    server = engines.RedisServer(tmp_path / "redis", users=["default off", USER], tls=certificates)
    try:
        server.start()
    except RuntimeError as exc:
        if "tls" in str(exc).lower() and not engines.in_ci():
            pytest.skip(f"this redis-server has no TLS support: {exc}")
        raise
    try:
        ca = certificates["ca"]
        good = f"rediss://app:{SECRET}@127.0.0.1:{server.port}/0?prefix=acl:&ssl_ca_certs={ca}"
        await roundtrip(good)
        bad = f"rediss://app:{WRONG}@127.0.0.1:{server.port}/0?prefix=acl:&ssl_ca_certs={ca}"
        await assert_refused_without_secret(bad, caplog)
        plain = f"redis://app:{SECRET}@127.0.0.1:{server.port}/0"
        with pytest.raises(TransportError) as caught:
            await QueueBroker.from_url(plain).connect()  # no TLS handshake: refused
        assert SECRET not in str(caught.value)
    finally:
        server.stop()
