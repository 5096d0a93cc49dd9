"""Backoff delays, choosing a transport by URL, and keeping passwords out of messages."""

from __future__ import annotations

import math
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microhive import Backoff, ConfigurationError, Queue, QueueBroker, Signal, SignalBus
from microhive.transports.memory import MemoryBroker, MemoryBus
from microhive.urls import number_option, redact, supported_schemes

# -- Backoff -----------------------------------------------------------------------------


def test_delays_grow_exponentially_without_jitter() -> None:
    backoff = Backoff(initial=0.5, factor=3, maximum=1000, jitter=0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 13.5, 40.5]


def test_delays_are_capped_at_maximum() -> None:
    backoff = Backoff(initial=1, factor=2, maximum=10, jitter=0)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 10, 10, 10]
    assert backoff.delay(10**9) == 10, "a huge attempt number neither overflows nor hangs"


def test_attempts_below_one_use_the_initial_delay() -> None:
    backoff = Backoff(initial=2, factor=2, jitter=0)
    assert backoff.delay(0) == 2
    assert backoff.delay(-5) == 2


def test_defaults() -> None:
    backoff = Backoff()
    assert (backoff.initial, backoff.factor, backoff.maximum, backoff.jitter) == (1, 2, 300, 0.1)
    assert all(0.9 <= backoff.delay(1) <= 1.1 for _ in range(50))


def test_factor_one_is_constant() -> None:
    backoff = Backoff(initial=0.25, factor=1, jitter=0)
    assert {backoff.delay(n) for n in range(1, 50)} == {0.25}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": -1},
        {"factor": 0.5},
        {"maximum": -0.1},
        {"jitter": -0.01},
        {"jitter": 1.5},
    ],
)
def test_invalid_backoff(kwargs: dict[str, float]) -> None:
    # ValueError per docs/api.md; ConfigurationError (a wiring error) is as good
    with pytest.raises((ValueError, ConfigurationError), match="Backoff needs"):
        Backoff(**kwargs)


@pytest.mark.parametrize("field", ["initial", "factor", "maximum"])
def test_nan_parameters_are_refused(field: str) -> None:
    with pytest.raises((ValueError, ConfigurationError)):
        Backoff(**{field: math.nan})


def test_large_factor_is_capped_not_overflowing() -> None:
    assert Backoff(initial=1, factor=1e6, maximum=60, jitter=0).delay(100) == 60


@given(
    initial=st.floats(0, 100),
    factor=st.floats(1, 10),
    maximum=st.floats(0, 1000),
    jitter=st.floats(0, 1),
    attempt=st.integers(-5, 500),
)
def test_delay_within_jitter_bounds(
    initial: float, factor: float, maximum: float, jitter: float, attempt: int
) -> None:
    backoff = Backoff(initial=initial, factor=factor, maximum=maximum, jitter=jitter)
    base = min(maximum, initial * factor ** min(max(attempt - 1, 0), 64))
    delay = backoff.delay(attempt)
    assert 0 <= delay <= maximum
    assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9


@given(
    initial=st.floats(0, 100),
    factor=st.floats(1, 10),
    maximum=st.floats(0, 1000),
    attempt=st.integers(1, 300),
)
def test_delay_without_jitter_is_monotonic(
    initial: float, factor: float, maximum: float, attempt: int
) -> None:
    backoff = Backoff(initial=initial, factor=factor, maximum=maximum, jitter=0)
    assert backoff.delay(attempt) <= backoff.delay(attempt + 1)
    assert backoff.delay(attempt) == min(maximum, initial * factor ** min(attempt - 1, 64))


def test_jitter_spreads_the_delays() -> None:
    backoff = Backoff(initial=10, factor=2, maximum=1000, jitter=0.5)
    delays = [backoff.delay(2) for _ in range(200)]
    assert all(10 <= d <= 30 for d in delays)
    assert len(set(delays)) > 100
    assert min(delays) < 15 and max(delays) > 25, "both sides of the base are used"


# -- URLs --------------------------------------------------------------------------------


def test_memory_urls_pick_the_memory_transport() -> None:
    signals = [Signal("ping")]
    bus = SignalBus.from_url("memory://", signals=signals)
    assert type(bus) is MemoryBus
    assert bus.url == "memory://"
    assert "ping" in bus.signals
    broker = QueueBroker.from_url("memory://named", queues=[Queue("jobs")])
    assert type(broker) is MemoryBroker
    assert broker.url == "memory://named"
    assert "jobs" in broker.queues
    assert type(SignalBus.from_url("MEMORY://x")) is MemoryBus, "schemes are case-insensitive"
    assert "memory" in supported_schemes("bus")
    assert "memory" in supported_schemes("broker")


@pytest.mark.parametrize(
    ("factory", "role"), [(SignalBus.from_url, "bus"), (QueueBroker.from_url, "broker")]
)
@pytest.mark.parametrize("url", ["mem://x", "zmq://host", "http://localhost"])
def test_unknown_scheme_lists_supported_schemes(factory, role: str, url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        factory(url)
    text = str(info.value)
    scheme = url.split("://", maxsplit=1)[0]
    assert f"unknown {role} URL scheme {scheme!r}" in text
    assert f"(supported: {', '.join(supported_schemes(role))})" in text


@pytest.mark.parametrize("url", ["localhost:6379", "memory", "", "memory:/x", None, 42])
def test_not_a_url(url: object) -> None:
    with pytest.raises(ConfigurationError, match="not a transport URL"):
        SignalBus.from_url(url)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not a transport URL"):
        QueueBroker.from_url(url)  # type: ignore[arg-type]


def test_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        SignalBus.from_url("zmq://user:hunter2@host:6379/0")
    assert "hunter2" not in str(info.value)
    assert "zmq://user:***@host:6379/0" in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        QueueBroker.from_url("nope://user:hunter2@host")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("url", ["user:hunter2@host:6379", "user:hunter2@host"])
def test_not_a_url_error_never_shows_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SignalBus.from_url(url)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("url", ["redis://u:hunter2@host:abc/0", "redis://u:hunter2@host:99999"])
def test_bad_port_still_gives_a_configuration_error_without_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SignalBus.from_url(url)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://user:secret@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:secret@host", "redis://:***@host"),
        (
            "amqp://guest:guest@rabbit/vhost?heartbeat=5",
            "amqp://guest:***@rabbit/vhost?heartbeat=5",
        ),
        ("nats://user:@host:4222", "nats://user:***@host:4222"),
        ("redis://user:p%40ss@host", "redis://user:***@host"),
        ("redis://user:p@ss@host", "redis://user:***@host"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://user@host", "redis://user@host"),
        ("nats://s3cr3t-token@host:4222", "nats://***@host:4222"),
        ("NATS://s3cr3t-token@host", "NATS://***@host"),
        ("tls://s3cr3t-token@[::1]:4222", "tls://***@[::1]:4222"),
        ("nats://user:pw@host", "nats://user:***@host"),
        ("memory://", "memory://"),
        ("http://[::1", "http://[::1"),
    ],
)
def test_redact(url: str, expected: str) -> None:
    assert redact(url) == expected


@pytest.mark.parametrize("password", ["pa/ss", "pa?ss", "pa#ss"])
def test_redact_hides_passwords_with_reserved_characters(password: str) -> None:
    assert password not in redact(f"redis://user:{password}@host:6379/0")


def test_redact_keeps_ipv6_hosts() -> None:
    assert redact("redis://u:secret@[::1]:6379/0") == "redis://u:***@[::1]:6379/0"


@given(
    scheme=st.sampled_from(["redis", "rediss", "amqp", "nats", "kafka", "memory"]),
    user=st.from_regex(r"[A-Za-z0-9_.\-]{0,10}", fullmatch=True),
    password=st.text(max_size=20),
    host=st.from_regex(r"[a-z][a-z0-9\-]{0,15}", fullmatch=True),
    port=st.none() | st.integers(0, 65535),
    path=st.from_regex(r"(/[A-Za-z0-9_]{0,8}){0,2}", fullmatch=True),
)
def test_redact_never_shows_the_password(
    scheme: str, user: str, password: str, host: str, port: int | None, path: str
) -> None:
    encoded = quote(password, safe="")
    where = host if port is None else f"{host}:{port}"
    url = f"{scheme}://{user}:{encoded}@{where}{path}"
    redacted = redact(url)
    # only the password changes, so it cannot show unless it is part of another component
    assert redacted == f"{scheme}://{user}:***@{where}{path}"
    if encoded and encoded not in f"{scheme}://{user}:@{where}{path}":
        assert encoded not in redacted


@pytest.mark.parametrize(
    ("value", "integer", "expected"),
    [("5", False, 5.0), ("0.25", False, 0.25), ("7", True, 7), ("0", True, 0)],
)
def test_number_option_accepts(value: str, integer: bool, expected: float) -> None:
    assert number_option("X URL", "k", value, integer=integer) == expected


@pytest.mark.parametrize(
    ("value", "integer", "words"),
    [
        ("soon", False, "X URL: option k='soon' must be a number"),
        ("1.5", True, "X URL: option k='1.5' must be an integer"),
        ("-1", False, "X URL: option k must be >= 0"),
        ("inf", False, "X URL: option k must be >= 0"),
        ("nan", False, "X URL: option k must be >= 0"),
    ],
)
def test_number_option_refuses_clearly(value: str, integer: bool, words: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        number_option("X URL", "k", value, integer=integer)
    assert str(info.value) == words


@pytest.mark.parametrize(
    "url",
    [
        "amqp://host/?password=hunter2",
        "kafka://host:9092?a=1&sasl_password=hunter2&b=2",
        "redis://host/0?auth_token=hunter2",
        "nats://host?secret=hunter2#x",
    ],
)
def test_a_secret_in_the_query_string_is_hidden(url: str) -> None:
    shown = redact(url)
    assert "hunter2" not in shown
    assert "***" in shown
    assert redact("redis://host/0?prefix=app:&group=workers") == (
        "redis://host/0?prefix=app:&group=workers"
    ), "other options are shown as they are"
