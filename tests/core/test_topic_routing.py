"""The memory transport's topic matcher and exchanges: AMQP 0-9-1 semantics, by property.

``*`` matches exactly one word, ``#`` zero or more; words are separated by dots and the
empty key has no words. tests/amqp/test_routing_agreement.py checks the same matcher against
RabbitMQ itself.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from microhive import ConfigurationError, Exchange, Queue, private_catalog
from microhive.transports.memory.routing import MemoryExchange, declare, topic_matches, words

WORD = st.sampled_from(["a", "b", "c", "sms", ""])
KEY = st.lists(WORD, max_size=6).map(".".join)
PATTERN = st.lists(st.one_of(WORD, st.sampled_from(["*", "#"])), max_size=6).map(".".join)


def reference(pattern: list[str], key: list[str]) -> bool:
    """The definition, written as plainly as possible (exponential, fine for tests)."""
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return reference(rest, key) or (bool(key) and reference(pattern, key[1:]))
    if not key:
        return False
    return (head == "*" or head == key[0]) and reference(rest, key[1:])


@given(PATTERN, KEY)
def test_matches_the_definition(pattern: str, key: str) -> None:
    assert topic_matches(pattern, key) == reference(words(pattern), words(key))


@given(KEY)
def test_hash_matches_everything_and_a_key_matches_itself(key: str) -> None:
    assert topic_matches("#", key)
    assert topic_matches(key, key)
    assert topic_matches("#." + key, key) if key else topic_matches("#", key)


@given(KEY)
def test_star_per_word(key: str) -> None:
    stars = ".".join("*" for _ in words(key))
    assert topic_matches(stars, key)
    assert not topic_matches(stars + ".*" if stars else "*", key)


@given(PATTERN, KEY, KEY)
def test_a_literal_prefix_is_needed(pattern: str, prefix: str, key: str) -> None:
    """A pattern starting with literal words only matches keys starting with those words."""
    literal = [w for w in words(prefix) if w not in ("*", "#")]
    full = ".".join([*literal, pattern]) if pattern else ".".join(literal)
    joined = ".".join(w for w in [key] if w)
    if topic_matches(full, joined):
        assert words(joined)[: len(literal)] == literal


def test_examples_from_the_seed() -> None:
    assert topic_matches("app.notification.sms.#", "app.notification.sms")
    assert topic_matches("app.notification.sms.#", "app.notification.sms.ru.mts")
    assert not topic_matches("app.notification.sms.#", "app.notification.push")
    assert topic_matches("*.orange.*", "quick.orange.rabbit")
    assert not topic_matches("*.orange.*", "quick.orange.male.rabbit")
    assert topic_matches("lazy.#", "lazy")
    assert not topic_matches("*", "")
    assert topic_matches("", "")


@given(st.lists(st.tuples(st.sampled_from(["q1", "q2", "q3"]), PATTERN), max_size=8), KEY)
def test_an_exchange_routes_to_each_matching_queue_once(
    bindings: list[tuple[str, str]], key: str
) -> None:
    exchange = MemoryExchange(Exchange("e", "topic"))
    for queue, pattern in bindings:
        exchange.bind(queue, pattern)
    routed = exchange.route(key)
    assert len(routed) == len(set(routed))
    expected = {queue for queue, pattern in bindings if topic_matches(pattern, key)}
    assert set(routed) == expected


def test_direct_and_fanout() -> None:
    direct = MemoryExchange(Exchange("d", "direct"))
    direct.bind("q1", "a.*")
    direct.bind("q2", "a.b")
    assert direct.route("a.b") == ["q2"]
    fanout = MemoryExchange(Exchange("f", "fanout"))
    fanout.bind("q1", "x")
    fanout.bind("q2", "")
    assert sorted(fanout.route("anything")) == ["q1", "q2"]
    fanout.unbind("q1", "x")
    assert fanout.route("") == ["q2"]


def test_redeclaring_with_another_type_is_refused() -> None:
    exchanges: dict[str, MemoryExchange] = {}
    declare(exchanges, Exchange("e", "topic"))
    try:
        declare(exchanges, Exchange("e", "fanout"))
    except ConfigurationError as exc:
        assert "already declared as 'topic'" in str(exc)
    else:
        raise AssertionError("a second type was accepted")


def test_exchange_and_binding_declarations() -> None:
    import pytest

    from microhive import Binding, Namespace

    notify = Exchange("notify", "topic")
    queue = Queue("sms", bindings=[(notify, "app.sms.#"), Binding(notify, "app.sms.#"), notify])
    assert queue.bindings == (Binding(notify, "app.sms.#"), Binding(notify, ""))
    assert queue.exchanges == (notify,)
    with private_catalog():
        unbound = Queue("sms")
    assert unbound != queue, "bindings are part of the declaration"
    with pytest.raises(ConfigurationError, match="conflicting"):
        Namespace([unbound, queue], kind="queue")
    with pytest.raises(ConfigurationError, match="declared twice with different shapes"):
        Queue("sms")
    with pytest.raises(ConfigurationError, match="type must be one of"):
        Exchange("x", "headers")
    with pytest.raises(ConfigurationError, match="invalid exchange name"):
        Exchange("bad name")
    with pytest.raises(ConfigurationError, match="255 bytes"):
        Binding(notify, "k" * 256)
    with pytest.raises(ConfigurationError, match="list of bindings"):
        Queue("q", bindings=notify)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="a binding is"):
        Queue("q", bindings=["notify"])  # type: ignore[list-item]
