"""Signals, queues and namespaces: declared once, checked at the sender, no global registry."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from microhive import (
    ConfigurationError,
    Namespace,
    PayloadError,
    Queue,
    Signal,
    UnknownNameError,
    private_catalog,
)


class Login(BaseModel):
    user: str
    attempts: int = 1


class StrictLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str


class Event(BaseModel):
    at: datetime
    tags: list[str] = []


# -- Signal with providing_args ----------------------------------------------------------


def test_signal_stores_args_as_tuple_in_order() -> None:
    signal = Signal("user_enter", ["name", "room"])
    assert signal.name == "user_enter"
    assert signal.providing_args == ("name", "room")
    assert signal.schema is None
    assert Signal("gen", (a for a in ["x", "y"])).providing_args == ("x", "y")
    assert Signal("bare").providing_args == ()


def test_make_payload_accepts_exactly_the_declared_args() -> None:
    signal = Signal("user_enter", ["name", "room"])
    given_args = {"name": "ann", "room": 7}
    payload = signal.make_payload(given_args)
    assert payload == {"name": "ann", "room": 7}
    assert payload is not given_args, "the payload is a copy, not the caller's mapping"
    assert Signal("bare").make_payload({}) == {}


def test_make_payload_rejects_missing_args_naming_signal_and_args() -> None:
    signal = Signal("user_enter", ["name", "room"])
    with pytest.raises(PayloadError) as info:
        signal.make_payload({"name": "ann"})
    text = str(info.value)
    assert "'user_enter'" in text
    assert "missing ['room']" in text
    assert "['name', 'room']" in text  # what the signal takes


def test_make_payload_rejects_undeclared_args_naming_them() -> None:
    signal = Signal("user_enter", ["name"])
    with pytest.raises(PayloadError) as info:
        signal.make_payload({"name": "ann", "nmae": "typo", "age": 3})
    text = str(info.value)
    assert "'user_enter'" in text
    assert "undeclared ['age', 'nmae']" in text
    assert "missing" not in text


def test_make_payload_reports_missing_and_undeclared_together() -> None:
    with pytest.raises(PayloadError, match=r"missing \['b'\], undeclared \['c'\]"):
        Signal("s", ["a", "b"]).make_payload({"a": 1, "c": 2})


def test_payload_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Signal("s", ["a"]).make_payload({})


@given(
    declared=st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True), unique=True),
    given_names=st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True), unique=True),
)
def test_make_payload_accepts_iff_the_names_match(
    declared: list[str], given_names: list[str]
) -> None:
    with private_catalog():  # each example declares "prop" anew
        signal = Signal("prop", declared)
    kwargs = {name: index for index, name in enumerate(given_names)}
    if set(declared) == set(given_names):
        assert signal.make_payload(kwargs) == kwargs
    else:
        with pytest.raises(PayloadError) as info:
            signal.make_payload(kwargs)
        for name in set(declared) ^ set(given_names):
            assert repr(name) in str(info.value)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["not an identifier"], "is not an identifier"),
        (["1abc"], "is not an identifier"),
        ([""], "is not an identifier"),
        ([3], "is not an identifier"),
        (["a", "a"], "duplicate argument"),
    ],
)
def test_bad_providing_args_are_configuration_errors(args: list[object], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words) as info:
        Signal("sig", args)  # type: ignore[arg-type]
    assert "'sig'" in str(info.value)


@pytest.mark.parametrize(
    "name", ["", " ", "has space", "-leading-dash", ".leading.dot", "a/b", "é", "x" * 201, None, 5]
)
def test_invalid_names_are_refused(name: object) -> None:
    with pytest.raises(ConfigurationError, match="invalid signal name"):
        Signal(name)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="invalid queue name"):
        Queue(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["a", "_x", "0day", "user.enter", "user-enter", "a" * 200])
def test_valid_names(name: str) -> None:
    assert Signal(name).name == name
    assert Queue(name).name == name


@pytest.mark.parametrize("cls", [Signal, Queue])
def test_name_with_trailing_newline_is_refused(cls: type) -> None:
    with pytest.raises(ConfigurationError):
        cls("ping\n")


def test_signals_are_values() -> None:
    assert Signal("a", ["x"]) == Signal("a", ("x",))
    assert hash(Signal("a", ["x"])) == hash(Signal("a", ("x",)))
    with private_catalog():  # another program may give "a" another shape
        other = Signal("a", ["y"])
    assert Signal("a", ["x"]) != other
    assert Signal("b") != Signal("c")
    with pytest.raises(dataclasses.FrozenInstanceError):
        Signal("b").name = "c"  # type: ignore[misc]
    assert repr(Signal("a", ["x"])) == "Signal('a')"


# -- Signal with a pydantic schema -------------------------------------------------------


def test_schema_signal_takes_its_args_from_the_model() -> None:
    signal = Signal("login", schema=Login)
    assert signal.providing_args == ("user", "attempts")
    assert signal.schema is Login


def test_schema_signal_validates_and_returns_json_ready_values() -> None:
    assert Signal("login", schema=Login).make_payload({"user": "ann"}) == {
        "user": "ann",
        "attempts": 1,
    }
    event = Signal("event", schema=Event).make_payload(
        {"at": datetime(2024, 1, 2, 3, 4, tzinfo=UTC), "tags": ("a",)}
    )
    assert event == {"at": "2024-01-02T03:04:00Z", "tags": ["a"]}


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, "user: Field required"),
        ({"user": "ann", "attempts": "many"}, "attempts: Input should be a valid integer"),
        ({"user": ["not", "a", "str"]}, "user: Input should be a valid string"),
    ],
)
def test_schema_violations_raise_payload_error(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(PayloadError) as info:
        Signal("login", schema=Login).make_payload(kwargs)
    assert "signal 'login'" in str(info.value)
    assert words in str(info.value)


def test_schema_with_extra_forbid_rejects_undeclared_args() -> None:
    with pytest.raises(PayloadError, match=r"signal 'strict'.*typo"):
        Signal("strict", schema=StrictLogin).make_payload({"user": "ann", "typo": 1})


def test_schema_signal_rejects_undeclared_args_like_providing_args() -> None:
    with pytest.raises(PayloadError, match="atempts"):
        Signal("login", schema=Login).make_payload({"user": "ann", "atempts": 3})


def test_schema_and_providing_args_are_exclusive() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        Signal("login", ["user"], schema=Login)


# -- Queue -------------------------------------------------------------------------------


def test_queue_without_schema_passes_any_payload_through() -> None:
    queue = Queue("jobs")
    payload = {"n": [1, 2, {"x": None}]}
    assert queue.make_payload(payload) is payload
    assert queue.make_payload("text") == "text"
    assert queue.make_payload(None) is None
    assert repr(queue) == "Queue('jobs')"


def test_queue_with_schema_validates_dicts_and_models() -> None:
    queue = Queue("logins", schema=Login)
    assert queue.make_payload({"user": "ann"}) == {"user": "ann", "attempts": 1}
    assert queue.make_payload(Login(user="bob", attempts=2)) == {"user": "bob", "attempts": 2}


@pytest.mark.parametrize("payload", [{}, {"user": 1.5}, "ann", None, [1]])
def test_queue_schema_violations_raise_payload_error(payload: object) -> None:
    with pytest.raises(PayloadError, match="queue 'logins'"):
        Queue("logins", schema=Login).make_payload(payload)


def test_queues_are_values() -> None:
    assert Queue("a") == Queue("a")
    with private_catalog():
        other = Queue("a", schema=Login)
    assert other == Queue("a"), "schema does not take part in equality"
    assert Queue("a") != Queue("b")


# -- Namespace ---------------------------------------------------------------------------


def make_signals() -> Namespace[Signal]:
    return Namespace(
        [Signal("user_enter", ["name"]), Signal("ping"), Signal("user.left", ["name"])],
        kind="signal",
    )


def test_namespace_attribute_and_item_access() -> None:
    signals = make_signals()
    assert signals.user_enter == Signal("user_enter", ["name"])
    assert signals["user.left"].providing_args == ("name",)
    assert signals.ping is signals["ping"]
    assert len(signals) == 3
    assert list(signals) == ["user_enter", "ping", "user.left"], "declaration order is kept"


def test_namespace_contains_by_name_and_by_value() -> None:
    signals = make_signals()
    assert "ping" in signals
    assert Signal("ping") in signals
    with private_catalog():
        assert Signal("ping", ["other"]) not in signals, "same name, different declaration"
    assert "nope" not in signals
    assert 42 not in signals


def test_unknown_name_lists_the_known_names() -> None:
    signals = make_signals()
    with pytest.raises(UnknownNameError) as info:
        _ = signals.user_entr
    assert str(info.value) == "unknown signal 'user_entr' (known: ping, user.left, user_enter)"
    with pytest.raises(UnknownNameError, match=r"unknown queue 'x' \(known: none\)"):
        _ = Namespace(kind="queue")["x"]


def test_unknown_name_is_an_attribute_error_for_getattr_and_hasattr() -> None:
    signals = make_signals()
    assert not hasattr(signals, "missing")
    assert getattr(signals, "missing", "default") == "default"
    assert isinstance(UnknownNameError("x"), ConfigurationError)


def test_namespace_get_returns_the_default_for_unknown_names() -> None:
    signals = make_signals()
    assert signals.get("missing") is None
    assert signals.get("missing", Signal("fallback")) == Signal("fallback")


def test_private_names_are_plain_attribute_errors() -> None:
    with pytest.raises(AttributeError) as info:
        _ = make_signals()._secret
    assert not isinstance(info.value, UnknownNameError)


def test_namespace_is_immutable() -> None:
    signals = make_signals()
    with pytest.raises(AttributeError, match="immutable"):
        signals.ping = Signal("other")  # type: ignore[misc]
    with pytest.raises(TypeError):
        signals["ping"] = Signal("other")  # type: ignore[index]


def test_identical_redeclaration_is_deduplicated() -> None:
    signals = Namespace([Signal("a", ["x"]), Signal("a", ["x"])], kind="signal")
    assert len(signals) == 1


def test_conflicting_redeclaration_is_an_error_naming_both() -> None:
    Signal("a", ["x"])
    with pytest.raises(ConfigurationError) as info:
        Signal("a", ["y"])
    text = str(info.value)
    assert "signal 'a' is declared twice with different shapes: Signal('a', ['x']) at " in text
    assert "and Signal('a', ['y']) at " in text
    assert text.count(f"{__file__}:") == 2, "both places are named"
    Queue("q", schema=Login)
    with pytest.raises(ConfigurationError, match=r"Queue\('q', schema=Login\) at .* Queue\('q'\)"):
        Queue("q")


def test_two_namespaces_from_different_catalogs_cannot_merge_a_conflict() -> None:
    with private_catalog():
        other = Signal("a", ["y"])
    with pytest.raises(ConfigurationError) as info:
        Namespace([Signal("a", ["x"]), other], kind="signal")
    assert "conflicting declarations of signal 'a'" in str(info.value)


def test_merge_returns_a_new_namespace_with_both() -> None:
    left = Namespace([Signal("a", ["x"])], kind="signal")
    right = Namespace([Signal("b"), Signal("a", ["x"])], kind="signal")
    merged = left.merge(right)
    assert sorted(merged) == ["a", "b"]
    assert list(left) == ["a"], "the original is unchanged"
    assert sorted(left.merge([Signal("c")])) == ["a", "c"], "plain iterables merge too"
    with pytest.raises(UnknownNameError, match="unknown signal"):
        _ = merged.zzz  # the kind survives a merge


def test_merge_with_a_conflicting_declaration_is_an_error() -> None:
    left = Namespace([Signal("a", ["x"])], kind="signal")
    with private_catalog():
        other = Signal("a", ["x", "y"])
    with pytest.raises(ConfigurationError, match="conflicting declarations of signal 'a'"):
        left.merge([other])
    queues = Namespace([Queue("q")], kind="queue")
    assert len(queues.merge([Queue("q")])) == 1


def test_two_private_catalogs_coexist_in_one_process() -> None:
    with private_catalog():
        first = Namespace([Signal("ping", ["a"])], kind="signal")
    with private_catalog():
        second = Namespace([Signal("ping", ["b"])], kind="signal")
    assert first.ping.providing_args == ("a",)
    assert second.ping.providing_args == ("b",)
    Signal("declared_elsewhere")
    assert "declared_elsewhere" not in first
    assert "declared_elsewhere" not in second
    assert "declared_elsewhere" not in Namespace(kind="signal")
