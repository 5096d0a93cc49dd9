"""The seed's JSON catalog: loading, and errors that name the file and the entry."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microhive import (
    Catalog,
    CatalogError,
    ConfigurationError,
    Exchange,
    Queue,
    QueueBroker,
    Signal,
    UnknownNameError,
    load_stuff,
    parse_catalog,
    private_catalog,
)

SEED = {
    "version": 1,
    "signals": [
        {"name": "user_enter", "providing_args": ["name"]},
        {"name": "check_user", "providing_args": ["user"]},
        {"name": "tick"},
    ],
    "queues": [{"name": "email"}, {"name": "post.created"}],
}


def write(tmp_path: Path, document: Any, name: str = "catalog.json") -> Path:
    path = tmp_path / name
    if isinstance(document, bytes):
        path.write_bytes(document)
    elif isinstance(document, str):
        path.write_text(document)
    else:
        path.write_text(json.dumps(document))
    return path


def test_load_by_path_returns_signals_and_queues(tmp_path: Path) -> None:
    path = write(tmp_path, SEED)
    signals, queues = load_stuff(str(path))
    assert signals.user_enter == Signal("user_enter", ["name"])
    assert signals.check_user.providing_args == ("user",)
    assert signals.tick.providing_args == ()
    assert queues.email == Queue("email")
    assert queues["post.created"] == Queue("post.created")
    assert list(signals) == ["user_enter", "check_user", "tick"]
    with pytest.raises(UnknownNameError, match=r"unknown signal 'nope'"):
        _ = signals.nope
    with pytest.raises(UnknownNameError, match=r"unknown queue 'nope'"):
        _ = queues.nope


def test_load_accepts_pathlike_and_file_urls(tmp_path: Path) -> None:
    path = write(tmp_path, SEED)
    expected = load_stuff(path)
    assert isinstance(expected, Catalog)
    assert load_stuff(path.as_uri()) == expected
    assert load_stuff(f"file://{path}") == expected
    assert load_stuff(f"file://localhost{path}") == expected


def test_file_url_with_percent_encoding(tmp_path: Path) -> None:
    folder = tmp_path / "with space"
    folder.mkdir()
    path = write(folder, SEED)
    assert f"file://{quote(str(path))}".count("%20") == 1
    assert len(load_stuff(f"file://{quote(str(path))}").signals) == 3


def test_sections_are_optional(tmp_path: Path) -> None:
    signals, queues = load_stuff(write(tmp_path, {"version": 1}))
    assert len(signals) == 0
    assert len(queues) == 0


def test_catalogs_merge(tmp_path: Path) -> None:
    first = load_stuff(write(tmp_path, SEED, "a.json"))
    second = load_stuff(
        write(tmp_path, {"version": 1, "signals": [{"name": "extra"}], "queues": []}, "b.json")
    )
    merged = first.merged(second)
    assert sorted(merged.signals) == ["check_user", "extra", "tick", "user_enter"]
    assert sorted(merged.queues) == ["email", "post.created"]


# -- errors ------------------------------------------------------------------------------


def load_error(tmp_path: Path, document: Any) -> str:
    path = write(tmp_path, document)
    with pytest.raises(CatalogError) as info:
        load_stuff(path)
    text = str(info.value)
    assert text.startswith(f"{path}: "), f"the error names the file: {text}"
    assert isinstance(info.value, ConfigurationError)
    return text


@pytest.mark.parametrize(
    "raw", ["{", "", "not json", '{"version": 1,}', "[1, 2", '{"version": 1} trailing']
)
def test_malformed_json(tmp_path: Path, raw: str) -> None:
    assert "not valid JSON" in load_error(tmp_path, raw)


def test_invalid_utf8(tmp_path: Path) -> None:
    assert "not valid JSON" in load_error(tmp_path, b'{"version": 1, "x": "\xff\xfe"}')


@pytest.mark.parametrize("version", [2, 0, "1", None, [1]])
def test_wrong_version(tmp_path: Path, version: object) -> None:
    text = load_error(tmp_path, {"version": version})
    assert f"unsupported version {version!r} (expected 1)" in text


def test_missing_version(tmp_path: Path) -> None:
    assert "unsupported version None" in load_error(tmp_path, {"signals": []})


def test_boolean_version_is_refused(tmp_path: Path) -> None:
    load_error(tmp_path, {"version": True})


@pytest.mark.parametrize("raw", ["[]", '"catalog"', "1", "null"])
def test_document_must_be_an_object(tmp_path: Path, raw: str) -> None:
    assert "must be a JSON object" in load_error(tmp_path, raw)


def test_unknown_top_level_keys(tmp_path: Path) -> None:
    text = load_error(tmp_path, {"version": 1, "signal": [], "extra": 1})
    assert "unknown keys ['extra', 'signal']" in text
    assert "allowed: ['exchanges', 'queues', 'signals', 'version']" in text


def test_duplicate_signal_names_name_both_entries(tmp_path: Path) -> None:
    text = load_error(
        tmp_path,
        {
            "version": 1,
            "signals": [
                {"name": "a"},
                {"name": "b"},
                {"name": "a", "providing_args": ["x"]},
            ],
        },
    )
    assert "signals[2] ('a'): duplicate name, first declared at signals[0]" in text


def test_duplicate_queue_names(tmp_path: Path) -> None:
    text = load_error(tmp_path, {"version": 1, "queues": [{"name": "q"}, {"name": "q"}]})
    assert "queues[1] ('q'): duplicate name, first declared at queues[0]" in text


def test_same_name_for_a_signal_and_a_queue_is_fine(tmp_path: Path) -> None:
    signals, queues = load_stuff(
        write(tmp_path, {"version": 1, "signals": [{"name": "x"}], "queues": [{"name": "x"}]})
    )
    assert "x" in signals
    assert "x" in queues


def test_exchanges_and_bindings(tmp_path: Path) -> None:
    signals, queues = load_stuff(
        write(
            tmp_path,
            {
                "version": 1,
                "exchanges": [{"name": "events", "type": "topic"}, {"name": "all"}],
                "queues": [
                    {"name": "audit", "bindings": [{"exchange": "events", "key": "user.#"}]},
                    {"name": "plain"},
                ],
            },
        )
    )
    [binding] = queues.audit.bindings
    assert binding.exchange == Exchange("events", "topic") and binding.key == "user.#"
    assert queues.plain.bindings == ()
    assert not signals


async def test_a_catalog_exchange_routes_on_memory(tmp_path: Path) -> None:
    _, queues = parse_catalog(
        {
            "version": 1,
            "exchanges": [{"name": "events", "type": "topic"}],
            "queues": [{"name": "audit", "bindings": [{"exchange": "events", "key": "user.*"}]}],
        }
    )
    async with QueueBroker.from_url("memory://catalog-routing", queues=queues) as broker:
        await broker.publish("events", {"n": 1}, routing_key="user.created")
        assert await broker.audit.length() == 1


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"version": 1, "queues": [{"name": "q", "bindings": [{"exchange": "nope"}]}]},
            "queues[0] ('q'): bindings[0]: exchange 'nope' is not declared in 'exchanges' "
            "(declared: none)",
        ),
        (
            {"version": 1, "exchanges": [{"name": "e", "type": "weird"}]},
            "exchanges[0] ('e'): exchange 'e': type must be one of direct, fanout, topic",
        ),
        (
            {"version": 1, "exchanges": [{"name": "e"}, {"name": "e"}]},
            "exchanges[1] ('e'): duplicate name, first declared at exchanges[0]",
        ),
        (
            {"version": 1, "exchanges": [{"name": "e", "kind": "topic"}]},
            "exchanges[0] ('e'): unknown keys ['kind'] (allowed: ['name', 'type'])",
        ),
        (
            {
                "version": 1,
                "exchanges": [{"name": "e"}],
                "queues": [{"name": "q", "bindings": [{"exchange": "e", "rk": "x"}]}],
            },
            "queues[0] ('q'): bindings[0]: unknown keys ['rk'] (allowed: exchange, key)",
        ),
        (
            {"version": 1, "queues": [{"name": "q", "bindings": {"exchange": "e"}}]},
            "queues[0] ('q'): 'bindings' must be a list",
        ),
        (
            {
                "version": 1,
                "exchanges": [{"name": "e"}],
                "queues": [{"name": "q", "bindings": [{"exchange": "e", "key": 5}]}],
            },
            "queues[0] ('q'): bindings[0]: 'exchange' (a name) and 'key' must be strings",
        ),
    ],
)
def test_exchange_and_binding_errors_name_the_entry(
    tmp_path: Path, document: dict[str, Any], expected: str
) -> None:
    assert expected in load_error(tmp_path, document)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"version": 1, "signals": [{"name": "a", "args": ["x"]}]},
            "signals[0] ('a'): unknown keys ['args'] (allowed: ['name', 'providing_args'])",
        ),
        (
            {"version": 1, "queues": [{"name": "q", "args": []}]},
            "queues[0] ('q'): unknown keys ['args'] "
            "(allowed: ['address', 'bindings', 'name', 'payload', 'providing_args'])",
        ),
        ({"version": 1, "signals": {"name": "a"}}, "'signals' must be a list"),
        ({"version": 1, "queues": "email"}, "'queues' must be a list"),
        ({"version": 1, "signals": ["a"]}, "signals[0]: each entry must be an object"),
        ({"version": 1, "queues": [{}]}, "queues[0]: 'name' is required"),
        (
            {"version": 1, "signals": [{"name": "ok"}, {"providing_args": []}]},
            "signals[1]: 'name' is required",
        ),
        ({"version": 1, "signals": [{"name": 5}]}, "signals[0] (5): invalid signal name 5"),
        ({"version": 1, "queues": [{"name": None}]}, "queues[0] (None): invalid queue name"),
        ({"version": 1, "queues": [{"name": "has space"}]}, "queues[0] ('has space'): invalid"),
        (
            {"version": 1, "signals": [{"name": "a", "providing_args": "x"}]},
            "signals[0] ('a'): 'providing_args' must be a list of names",
        ),
        (
            {"version": 1, "signals": [{"name": "a", "providing_args": [1]}]},
            "signals[0] ('a'): signal 'a': argument 1 is not an identifier",
        ),
        (
            {"version": 1, "signals": [{"name": "a", "providing_args": ["x", "x"]}]},
            "signals[0] ('a'): signal 'a': duplicate argument",
        ),
    ],
)
def test_entry_errors_name_the_file_and_the_entry(
    tmp_path: Path, document: dict[str, Any], expected: str
) -> None:
    assert expected in load_error(tmp_path, document)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(CatalogError) as info:
        load_stuff(path)
    assert str(info.value) == f"{path}: cannot read catalog: No such file or directory"
    with pytest.raises(CatalogError, match=r"absent\.json: cannot read catalog"):
        load_stuff(path.as_uri())


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=f"{tmp_path}: cannot read catalog"):
        load_stuff(tmp_path)


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("http://example.com/catalog.json", "a catalog is a path or a file:// URL"),
        ("file://otherhost/tmp/catalog.json", "only local file:// URLs are supported"),
    ],
)
def test_unsupported_sources(source: str, words: str) -> None:
    with pytest.raises(CatalogError, match=words) as info:
        load_stuff(source)
    assert str(info.value).startswith(source)


def test_parse_catalog_names_its_origin() -> None:
    with pytest.raises(CatalogError, match=r"^<catalog>: unsupported version"):
        parse_catalog({})
    with pytest.raises(CatalogError, match=r"^seed\.json: signals\[0\]"):
        parse_catalog({"version": 1, "signals": [1]}, origin="seed.json")


# -- property: any valid catalog round-trips ---------------------------------------------

names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
identifiers = st.from_regex(r"[A-Za-z_\u00e9\u03bb][A-Za-z0-9_\u00e9\u03bb]{0,10}", fullmatch=True)
signal_entries = st.tuples(names, st.none() | st.lists(identifiers, unique=True, max_size=5))
routing_keys = st.from_regex(r"[a-z*#]{0,5}(\.[a-z*#]{1,5}){0,3}", fullmatch=True)
exchange_entries = st.tuples(names, st.sampled_from(["direct", "fanout", "topic"]))
catalogs = st.fixed_dictionaries(
    {"version": st.just(1)},
    optional={
        "signals": st.lists(signal_entries, unique_by=lambda e: e[0], max_size=8),
        "queues": st.lists(names, unique=True, max_size=8),
        "exchanges": st.lists(exchange_entries, unique_by=lambda e: e[0], min_size=1, max_size=3),
        "keys": st.lists(routing_keys, max_size=8),
    },
)


def as_document(generated: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {"version": 1}
    if "signals" in generated:
        document["signals"] = [
            {"name": name} if args is None else {"name": name, "providing_args": args}
            for name, args in generated["signals"]
        ]
    exchanges = generated.get("exchanges", [])
    if exchanges:
        document["exchanges"] = [{"name": name, "type": kind} for name, kind in exchanges]
    if "queues" in generated:
        keys = generated.get("keys", [])
        document["queues"] = [{"name": name} for name in generated["queues"]]
        for index, (entry, key) in enumerate(zip(document["queues"], keys, strict=False)):
            if exchanges:  # bind the first queues, each to one exchange in turn
                entry["bindings"] = [{"exchange": exchanges[index % len(exchanges)][0], "key": key}]
    return document


@settings(deadline=None)
@given(generated=catalogs, as_url=st.booleans())
def test_any_valid_catalog_round_trips(generated: dict[str, Any], as_url: bool) -> None:
    document = as_document(generated)
    with tempfile.TemporaryDirectory() as folder, private_catalog():  # one program per example
        path = Path(folder) / "catalog.json"
        path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
        signals, queues = load_stuff(path.as_uri() if as_url else str(path))
    expected_signals = [
        (entry["name"], tuple(entry.get("providing_args", ())))
        for entry in document.get("signals", [])
    ]
    assert [(s.name, s.providing_args) for s in signals.values()] == expected_signals
    assert list(queues) == [entry["name"] for entry in document.get("queues", [])]
    for name, args in expected_signals:
        with private_catalog():
            assert signals[name] == Signal(name, args)
    kinds = {entry["name"]: entry["type"] for entry in document.get("exchanges", [])}
    for entry in document.get("queues", []):
        assert [
            (b.exchange.name, b.exchange.type, b.key) for b in queues[entry["name"]].bindings
        ] == [(b["exchange"], kinds[b["exchange"]], b["key"]) for b in entry.get("bindings", [])]


def test_a_queue_can_say_its_payload_kind_and_engine_address(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "queues": [
                    {"name": "hello", "payload": "text"},
                    {"name": "telemetry", "address": "terra_topic"},
                ],
            }
        )
    )
    _, queues = load_stuff(path)
    assert queues.hello.payload == "text"
    assert queues.telemetry.address == "terra_topic"
    assert queues.telemetry.payload == "json"
    path.write_text(json.dumps({"version": 1, "queues": [{"name": "x", "payload": "xml"}]}))
    with pytest.raises(CatalogError, match=r"queues\[0\] \('x'\): .*payload must be one of"):
        load_stuff(path)
