"""URL options of the NATS transport: parsed, checked, and never leaking a secret."""

from __future__ import annotations

import pytest

from microhive import ConfigurationError, QueueBroker, SignalBus
from microhive.transports.links import CONNECT_TIMEOUT
from microhive.transports.nats import NatsBroker, NatsBus, parse
from microhive.transports.nats.options import safe


def test_defaults_and_names() -> None:
    options = parse("nats://localhost")
    assert options.servers == ("nats://localhost:4222",)
    assert options.prefix == "microhive" and options.durable == "microhive"
    assert options.ack_wait == 30 and options.expires == 5 and options.max_deliver == 20
    assert options.history == 10_000 and not options.dedup and not options.tls
    assert options.signal_subject("user_enter") == "microhive.signal.user_enter"
    assert options.queue_subject("bench.work") == "microhive.queue.bench.work"
    assert options.retry_subject("jobs") == "microhive.retry.jobs"
    assert options.dead_subject("jobs") == "microhive.dead.jobs"
    assert options.stream("bench.work") == "microhive_queue_bench_work"
    assert options.dead_stream("jobs") == "microhive_dead_jobs"


def test_connect_timeout_is_the_shared_budget_of_connect() -> None:
    assert parse("nats://localhost").connect_timeout == CONNECT_TIMEOUT == 10.0
    assert parse("nats://localhost?connect_timeout=1.5").connect_timeout == 1.5
    with pytest.raises(ConfigurationError, match="connect_timeout must be > 0"):
        parse("nats://localhost?connect_timeout=0")


def test_servers_credentials_and_options_from_the_url() -> None:
    options = parse(
        "nats://app:p%40ss@n1.example:4223,n2.example,[::1]:4224?prefix=shop&ack_wait=5"
        "&max_deliver=0&dedup=true&storage=memory&name=billing"
    )
    assert options.servers == (
        "nats://n1.example:4223",
        "nats://n2.example:4222",
        "nats://[::1]:4224",
    )
    assert options.user == "app" and options.password == "p@ss" and options.token is None
    assert options.prefix == "shop" and options.ack_wait == 5 and options.max_deliver == 0
    assert options.dedup and options.storage == "memory" and options.name == "billing"
    assert "p@ss" not in repr(options) and "p%40ss" not in options.safe_url


def test_tls_scheme_and_token() -> None:
    options = parse("tls://s3cr3t-token@nats.example?tls_hostname=nats.internal")
    assert options.tls and options.servers == ("tls://nats.example:4222",)
    assert options.token == "s3cr3t-token" and options.user is None
    assert options.safe_url == "tls://***@nats.example?tls_hostname=nats.internal"
    assert parse("nats://h?tls_ca=/etc/ca.pem").tls, "a tls_* option turns TLS on"


def test_safe_hides_passwords_and_tokens() -> None:
    assert safe("nats://u:hunter2@h:4222") == "nats://u:***@h:4222"
    assert safe("nats://hunter2@h:4222") == "nats://***@h:4222"
    assert safe("nats://h:4222?prefix=x") == "nats://h:4222?prefix=x"


@pytest.mark.parametrize(
    "query, words",
    [
        ("ack_wait=soon", "ack_wait='soon' must be a number"),
        ("history=1.5", "history='1.5' must be an integer"),
        ("expires=-1", "expires must be >= 0"),
        ("expires=0.1", "expires must be at least 0.2 s"),
        ("ack_wait=0", "ack_wait must be > 0"),
        ("prefix=a.b", "prefix='a.b' must be 1 to 64 letters"),
        ("storage=tape", "storage must be 'file' or 'memory'"),
        ("dedup=maybe", "dedup='maybe' must be true or false"),
        ("colour=blue", "unknown option 'colour'"),
        ("password=hunter2", "must not carry 'password'"),
        ("token=hunter2", "must not carry 'token'"),
    ],
)
def test_bad_options_are_clear_errors(query: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse(f"nats://user:hunter2@localhost?{query}")
    assert words in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("url", ["nats://h:99999", "nats://h:x", "nats://h/path", "nats://,h"])
def test_bad_servers_are_clear_errors(url: str) -> None:
    with pytest.raises(ConfigurationError, match="NATS URL"):
        parse(url)


def test_schemes_resolve_to_the_nats_transport() -> None:
    assert isinstance(SignalBus.from_url("nats://localhost"), NatsBus)
    assert isinstance(SignalBus.from_url("tls://localhost"), NatsBus)
    assert isinstance(QueueBroker.from_url("nats://localhost"), NatsBroker)
    broker = QueueBroker.from_url("tls://u:hunter2@localhost")
    assert "hunter2" not in repr(broker) and "***" in repr(broker)
    bus = SignalBus.from_url("nats://hunter2@localhost")
    assert "hunter2" not in repr(bus)
    capabilities = NatsBroker.capabilities
    assert capabilities.durable and capabilities.out_of_process and capabilities.replay
    assert capabilities.delayed_delivery and capabilities.dead_letter
    assert not capabilities.routing and not capabilities.partitions
    assert NatsBus.capabilities.out_of_process and not NatsBus.capabilities.durable


def test_bus_inbox_and_subjects_are_under_the_prefix() -> None:
    bus = SignalBus.from_url("nats://localhost?prefix=shop")
    assert isinstance(bus, NatsBus)
    assert bus.inbox.startswith("shop.reply.") and len(bus.inbox) == len("shop.reply.") + 32
    assert bus.subject("ping") == "shop.signal.ping"
