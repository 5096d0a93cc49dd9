"""Where results live, by URL: results_url_of, open_engine_store, the results= option of each
transport, and its password kept out of messages."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microhive import QueueBroker
from microhive.errors import ConfigurationError
from microhive.tasks.stores.engines import open_engine_store, results_url_of
from microhive.tasks.stores.nats import NatsStore
from microhive.tasks.stores.redis import RedisStore
from microhive.transports.amqp.options import parse as parse_amqp
from microhive.transports.kafka.options import parse as parse_kafka
from microhive.transports.nats.options import parse as parse_nats
from microhive.transports.redis.options import parse as parse_redis
from microhive.urls import redact

STORE = "redis://:secret@10.0.0.5:6379/2?prefix=app:"
ENCODED = quote(STORE, safe="")


@pytest.mark.parametrize(
    "parse, base",
    [
        (parse_amqp, "amqp://guest:guest@127.0.0.1:5672/"),
        (parse_kafka, "kafka://127.0.0.1:9092"),
        (parse_redis, "redis://127.0.0.1:6379/0"),
        (parse_nats, "nats://127.0.0.1:4222"),
    ],
)
def test_every_transport_takes_a_results_url(parse, base) -> None:  # type: ignore[no-untyped-def]
    assert parse(f"{base}?results={ENCODED}").results == STORE
    assert parse(f"{base}?results=nats://127.0.0.1:4222").results == "nats://127.0.0.1:4222"
    assert parse(base).results == ""


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0?prefix=x:",
        "rediss://127.0.0.1:6380/0",
        "nats://127.0.0.1:4222?prefix=x",
        "memory://here",
    ],
)
def test_redis_nats_and_memory_keep_their_own_results(url: str) -> None:
    assert results_url_of(QueueBroker.from_url(url)) == url


@pytest.mark.parametrize(
    "url", ["amqp://guest:guest@127.0.0.1:5672/", "kafka://127.0.0.1:9092", "redis://h/0"]
)
def test_a_results_option_names_the_store(url: str) -> None:
    sep = "&" if "?" in url else "?"
    assert results_url_of(QueueBroker.from_url(f"{url}{sep}results={ENCODED}")) == STORE


@pytest.mark.parametrize("scheme", ["amqp", "kafka"])
def test_amqp_and_kafka_without_a_results_option_say_which_option(scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{5672 if scheme == 'amqp' else 9092}"
    with pytest.raises(ConfigurationError) as caught:
        results_url_of(QueueBroker.from_url(url))
    message = str(caught.value)
    assert f"{scheme}://...?results=redis://127.0.0.1:6379/0" in message
    assert "docs/results.md" in message


def test_a_results_url_of_another_kind_is_refused_without_its_password() -> None:
    broker = QueueBroker.from_url(f"kafka://127.0.0.1:9092?results={quote('amqp://u:pw@h/')}")
    with pytest.raises(ConfigurationError, match="not a result store URL") as caught:
        results_url_of(broker)
    assert "pw" not in str(caught.value)


def test_open_engine_store_by_scheme() -> None:
    assert isinstance(open_engine_store("redis://127.0.0.1:6379/0"), RedisStore)
    assert isinstance(open_engine_store("redis+unix:///tmp/redis.sock"), RedisStore)
    assert isinstance(open_engine_store("nats://127.0.0.1:4222"), NatsStore)
    assert isinstance(open_engine_store("tls://127.0.0.1:4222"), NatsStore)
    for url in ("memory://x", "amqp://h/", "kafka://h:9092"):
        with pytest.raises(ConfigurationError, match="results cannot be kept"):
            open_engine_store(url)
    assert isinstance(open_engine_store("redis+sentinel://127.0.0.1:26379/hive"), RedisStore)
    with pytest.raises(ConfigurationError, match="unknown option"):
        open_engine_store("nats://127.0.0.1:4222?colour=blue")


# a marker no URL part contains, then anything
passwords = st.text(st.characters(codec="utf-8", exclude_characters="\x00")).map(
    lambda t: f"Z9q{t}"
)


@given(password=passwords, encoded=st.booleans())
def test_the_password_of_a_results_url_is_never_shown(password: str, encoded: bool) -> None:
    inner = f"redis://user:{quote(password, safe='')}@store:6379/0"
    value = quote(inner, safe="") if encoded else inner
    shown = redact(f"amqp://guest:outer-secret@broker/?results={value}&prefix=p")
    assert quote(password, safe="") not in shown
    assert quote(quote(password, safe=""), safe="") not in shown
    assert "outer-secret" not in shown
