"""Credentials, written once for every engine: a good password works, a wrong one is
refused, and neither ever appears in an error, a log line or a repr."""

from __future__ import annotations

import logging
import re

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
        assert await bus.ping.call("test", n=21, timeout=30) == 42
        await broker.jobs.send({"n": 7})
        await eventually(lambda: agent.settings["jobs"] == [7], 30)


async def refused_without_the_secret(
    url: str, refusal: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Both transports refuse ``url`` (wrong credentials) with a TransportError that says
    so (``refusal``, a pattern) and shows the password as ``***``; the logs never show it."""
    caplog.set_level(logging.DEBUG)
    for make in (SignalBus.from_url, QueueBroker.from_url):
        transport = make(url)
        assert WRONG not in repr(transport)
        with pytest.raises(TransportError) as caught:
            await transport.connect()
        message = str(caught.value)
        assert WRONG not in message and "***" in message, message
        assert re.search(refusal, message), message
        assert not transport.connected
    assert WRONG not in caplog.text


async def a_password_works_and_a_wrong_one_is_never_shown(
    good: str, bad: str, refusal: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``good`` carries SECRET, ``bad`` WRONG, for the same server."""
    caplog.set_level(logging.DEBUG)
    await roundtrip(good)
    await refused_without_the_secret(bad, refusal, caplog)
    assert SECRET not in caplog.text


async def tls_with_a_password(
    good: str, bad: str, untrusted: str, refusal: str, caplog: pytest.LogCaptureFixture
) -> None:
    """As above over TLS; ``untrusted`` (the right password, but no TLS handshake or an
    unknown certificate) is refused without showing it."""
    await a_password_works_and_a_wrong_one_is_never_shown(good, bad, refusal, caplog)
    with pytest.raises(TransportError) as caught:
        await QueueBroker.from_url(untrusted).connect()
    assert SECRET not in str(caught.value)


def a_password_in_the_query_string_is_refused_without_echoing_it(url: str) -> None:
    """``url`` carries WRONG as a query option: refused when parsed, never echoed."""
    with pytest.raises(ConfigurationError) as caught:
        QueueBroker.from_url(url)
    assert WRONG not in str(caught.value), str(caught.value)
