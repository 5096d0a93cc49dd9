"""URL options of the Kafka transport: parsed, checked, refused clearly."""

from __future__ import annotations

import pytest

from microhive import ConfigurationError, QueueBroker, SignalBus
from microhive.transports.kafka import KafkaBroker, parse

from ..scenarios import security


def test_defaults_and_names() -> None:
    options = parse("kafka://localhost")
    assert options.servers == ("localhost:9092",)
    assert options.prefix == "microhive" and options.group == "microhive"
    assert options.partitions == 3 and options.replication == 1 and options.acks == "all"
    assert options.topic("bench.work") == "microhive.queue.bench.work"
    assert options.delay_topic("jobs") == "microhive.delay.jobs"
    assert options.dead_topic("jobs") == "microhive.dead.jobs"
    assert options.group_id("jobs") == "microhive.group.microhive.jobs"
    assert options.delay_group("jobs") == "microhive.delay.jobs"
    settings = options.group_settings()
    assert settings["enable_auto_commit"] is False
    assert settings["session_timeout_ms"] == 10_000
    assert settings["rebalance_timeout_ms"] == 10_000, "defaults to the session timeout"


def test_servers_and_options_from_the_url() -> None:
    options = parse(
        "kafka://k1.example:9093,k2.example,[::1]:9094/?prefix=shop&group=billing"
        "&partitions=12&acks=1&linger=0.005&session_timeout=2&heartbeat_interval=0.2"
    )
    assert options.servers == ("k1.example:9093", "k2.example:9092", "[::1]:9094")
    assert options.bootstrap == "k1.example:9093,k2.example:9092,[::1]:9094"
    assert options.prefix == "shop" and options.group == "billing"
    assert options.partitions == 12 and options.acks == "1" and options.linger == 0.005
    assert options.group_settings()["heartbeat_interval_ms"] == 200


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("kafka://h?partitons=3", r"unknown option 'partitons'.*known: acks"),
        ("kafka://h?partitions=0", "partitions must be >= 1"),
        ("kafka://h?partitions=two", "partitions='two' must be an integer"),
        ("kafka://h?linger=-1", "linger must be >= 0"),
        ("kafka://h?acks=0", "acks must be 'all' or '1'"),
        ("kafka://h?prefix=a/b", "prefix must be 1 to 100 letters"),
        ("kafka://h?session_timeout=1&heartbeat_interval=2", "heartbeat_interval must be below"),
        ("kafka://h:99999", "bad port"),
        ("kafka://h,,k", "an empty host"),
        ("kafka://h/path", "no path"),
        ("redis://h", "not a Kafka URL"),
    ],
)
def test_bad_urls_are_refused_clearly(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        parse(url)


def test_credentials_are_refused_without_showing_the_password() -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse("kafka://app:s3cret@h:9092")
    assert "s3cret" not in str(raised.value) and "not supported" in str(raised.value)


def test_a_password_in_the_query_string_is_refused_without_echoing_it() -> None:
    security.a_password_in_the_query_string_is_refused_without_echoing_it(
        f"kafka://127.0.0.1:9092?password={security.WRONG}"
    )


def test_the_scheme_picks_the_broker_and_the_bus_refuses_with_advice() -> None:
    assert isinstance(QueueBroker.from_url("kafka://127.0.0.1:9092"), KafkaBroker)
    with pytest.raises(ConfigurationError, match=r"carries queues.*--bus nats://.*--broker kafka"):
        SignalBus.from_url("kafka://127.0.0.1:9092")


def test_capabilities() -> None:
    capabilities = KafkaBroker.capabilities
    assert capabilities.out_of_process and capabilities.durable and capabilities.partitions
    assert capabilities.replay and capabilities.dead_letter and capabilities.delayed_delivery
    assert not capabilities.routing
