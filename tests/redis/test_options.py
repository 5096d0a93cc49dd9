"""URL options of the Redis transport: parsed, checked, and never leaking the password."""

from __future__ import annotations

import pytest

from microhive import ConfigurationError, QueueBroker, SignalBus
from microhive.transports.redis import RedisBroker, RedisBus, parse
from microhive.transports.redis.options import consumer_name


def test_defaults_and_names() -> None:
    options = parse("redis://localhost")
    assert options.prefix == "microhive:"
    assert options.claim_idle == 30 and options.block == 1 and options.maxlen == 0
    assert options.max_deliver == 20
    assert options.stream("jobs") == "microhive:queue:jobs"
    assert options.delayed("jobs") == "microhive:queue:jobs:delayed"
    assert options.retries("jobs", "Worker") == "microhive:queue:jobs:retry:Worker"
    assert options.dead("jobs") == "microhive:queue:jobs:dead"
    assert options.signal_channel("user_enter") == "microhive:signal:user_enter"
    assert options.connection["host"] == "localhost"
    assert options.connection.get("db", 0) == 0


def test_options_from_the_query_and_connection_arguments() -> None:
    options = parse(
        "rediss://app:pw@redis.example:6380/3?prefix=shop:&claim_idle=5&maxlen=1000"
        "&ssl_ca_certs=/etc/ca.pem&socket_connect_timeout=2&max_deliver=0"
    )
    assert options.prefix == "shop:" and options.claim_idle == 5 and options.maxlen == 1000
    assert options.max_deliver == 0
    connection = options.connection
    assert connection["connection_class"].__name__ == "SSLConnection"
    assert connection["username"] == "app" and connection["password"] == "pw"
    assert connection["port"] == 6380 and connection["db"] == 3
    assert connection["ssl_ca_certs"] == "/etc/ca.pem"
    assert connection["socket_connect_timeout"] == 2.0
    assert options.claim_every == 1.0


@pytest.mark.parametrize(
    "query, words",
    [
        ("claim_idle=soon", "claim_idle='soon' must be a number"),
        ("maxlen=1.5", "maxlen='1.5' must be an integer"),
        ("block=-1", "block must be >= 0"),
        ("claim_idle=0", "must be > 0"),
        ("colour=blue", "unknown option(s) ['colour']"),
    ],
)
def test_bad_options_are_clear_errors(query: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse(f"redis://user:hunter2@localhost/0?{query}")
    assert words in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_schemes_resolve_to_the_redis_transport() -> None:
    assert isinstance(SignalBus.from_url("redis://localhost"), RedisBus)
    assert isinstance(SignalBus.from_url("rediss://localhost"), RedisBus)
    assert isinstance(QueueBroker.from_url("redis://localhost"), RedisBroker)
    broker = QueueBroker.from_url("rediss://u:hunter2@localhost")
    assert "hunter2" not in repr(broker) and "***" in repr(broker)
    assert RedisBroker.capabilities.durable and RedisBroker.capabilities.out_of_process
    assert RedisBroker.capabilities.delayed_delivery and RedisBroker.capabilities.dead_letter
    assert RedisBus.capabilities.out_of_process


def test_bus_inbox_is_under_the_prefix() -> None:
    bus = SignalBus.from_url("redis://localhost?prefix=shop:")
    assert bus.inbox.startswith("shop:reply.") and len(bus.inbox) == len("shop:reply.") + 32
    assert isinstance(bus, RedisBus) and bus.channel("ping") == "shop:signal:ping"


def test_every_consumer_of_a_queue_shares_one_group_by_default() -> None:
    assert parse("redis://127.0.0.1:6379/0").group == "microhive"
    assert parse("redis://127.0.0.1:6379/0?group=billing").group == "billing"
    with pytest.raises(ConfigurationError, match="group"):
        parse("redis://127.0.0.1:6379/0?group=")
    assert consumer_name("Worker.ab12cd34", "fallback") == "Worker.ab12cd34"
    assert consumer_name("", "fallback") == "fallback"


def test_a_url_without_a_host_is_the_local_server() -> None:
    """``RedisBroker()``'s default URL, ``redis://``."""
    assert parse("redis://").connection["host"] == "127.0.0.1"
    assert isinstance(QueueBroker.from_url("redis://"), RedisBroker)


def test_unix_socket_urls() -> None:
    options = parse("redis+unix://:hunter2@/run/redis/redis.sock?db=2&prefix=shop:")
    connection = options.connection
    assert connection["connection_class"].__name__ == "UnixDomainSocketConnection"
    assert connection["path"] == "/run/redis/redis.sock" and connection["db"] == 2
    assert connection["password"] == "hunter2" and options.prefix == "shop:"
    assert "hunter2" not in options.safe_url
    assert isinstance(SignalBus.from_url("redis+unix:///run/redis.sock"), RedisBus)
    with pytest.raises(ConfigurationError, match="no socket path"):
        parse("redis+unix://")


def test_sentinel_urls() -> None:
    options = parse("redis+sentinel://app:hunter2@s1:26380,s2,[::1]:5000/hive/3?claim_idle=5")
    assert options.master == "hive"
    assert options.sentinels == (("s1", 26380), ("s2", 26379), ("::1", 5000))
    connection = options.connection
    assert (connection["username"], connection["password"], connection["db"]) == (
        "app",
        "hunter2",
        3,
    )
    assert options.claim_idle == 5 and "hunter2" not in options.safe_url
    assert isinstance(QueueBroker.from_url("redis+sentinel://s1/hive"), RedisBroker)
    with pytest.raises(ConfigurationError, match="name the master") as caught:
        parse("redis+sentinel://:hunter2@s1:26379/")
    assert "hunter2" not in str(caught.value)
