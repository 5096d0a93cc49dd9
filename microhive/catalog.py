"""Loading the seed's JSON catalog: ``{"version": 1, "signals": [...], "queues": [...]}``.

Beyond the seed's format, a catalog may declare ``"exchanges": [{"name", "type"}]`` and give a
queue ``"bindings": [{"exchange": "<name>", "key": "<routing key>"}]``, ``"payload": "text"``
(or ``"bytes"``), ``"address": "<existing engine object>"`` and, for a task queue,
``"providing_args": [...]`` (its arguments, checked at the sender; docs/tasks.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlparse

import orjson

from .declarations import Binding, Exchange, Namespace, Queue, Signal
from .errors import CatalogError, ConfigurationError
from .registry import active_registry, declaring_from, private_catalog

_TOP_KEYS = {"version", "signals", "queues", "exchanges"}
_SIGNAL_KEYS = {"name", "providing_args"}
_QUEUE_KEYS = {"name", "bindings", "payload", "address", "providing_args"}
_EXCHANGE_KEYS = {"name", "type"}
_BINDING_KEYS = {"exchange", "key"}


class Catalog(NamedTuple):
    """The declarations of one system; unpacks as ``signals, queues = load_stuff(...)``."""

    signals: Namespace[Signal]
    queues: Namespace[Queue]

    @classmethod
    def empty(cls) -> Catalog:
        return cls(Namespace(kind="signal"), Namespace(kind="queue"))

    def merged(self, other: Catalog) -> Catalog:
        return Catalog(self.signals.merge(other.signals), self.queues.merge(other.queues))


def _path_of(source: str | os.PathLike[str]) -> Path:
    text = os.fspath(source)
    if text.startswith("file:"):
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise CatalogError(f"{text}: only local file:// URLs are supported")
        return Path(unquote(parsed.path))
    if "://" in text:
        raise CatalogError(f"{text}: a catalog is a path or a file:// URL")
    return Path(text)


def load_stuff(source: str | os.PathLike[str]) -> Catalog:
    """Read signals and queues from a JSON catalog file (a path or a ``file://`` URL)."""
    path = _path_of(source)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read catalog: {exc.strerror or exc}") from None
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CatalogError(f"{path}: not valid JSON: {exc}") from None
    return parse_catalog(document, origin=str(path))


def parse_catalog(document: Any, *, origin: str = "<catalog>") -> Catalog:
    """Build a catalog from an already-decoded document; errors name ``origin`` and the entry.

    Its declarations join the active registry (microhive/registry.py) once the whole document
    is valid, so the program can then use every name anywhere.
    """
    catalog = _parse(document, origin)
    registry = active_registry()
    sections: tuple[tuple[str, str, list[Signal | Queue]], ...] = (
        ("signals", "signal", list(catalog.signals.values())),
        ("queues", "queue", list(catalog.queues.values())),
    )
    for section, kind, items in sections:
        for index, item in enumerate(items):
            where = f"{origin}: {section}[{index}] ({item.name!r})"
            with declaring_from(where):
                try:
                    registry.add(kind, item, item.shape())
                except ConfigurationError as exc:
                    raise CatalogError(str(exc)) from None
    return catalog


def _parse(document: Any, origin: str) -> Catalog:
    if not isinstance(document, dict):
        raise CatalogError(f"{origin}: the catalog must be a JSON object")
    if unknown := set(document) - _TOP_KEYS:
        raise CatalogError(
            f"{origin}: unknown keys {sorted(unknown)} (allowed: {sorted(_TOP_KEYS)})"
        )
    version = document.get("version")
    if type(version) is not int or version != 1:
        raise CatalogError(
            f"{origin}: unsupported version {document.get('version')!r} (expected 1)"
        )
    signals = [
        _entry(origin, "signals", index, entry, _SIGNAL_KEYS, _make_signal)
        for index, entry in enumerate(_list(origin, document, "signals"))
    ]
    exchanges = [
        _entry(origin, "exchanges", index, entry, _EXCHANGE_KEYS, _make_exchange)
        for index, entry in enumerate(_list(origin, document, "exchanges"))
    ]
    _no_duplicates(origin, "exchanges", [e.name for e in exchanges])
    by_name = {exchange.name: exchange for exchange in exchanges}
    queues = [
        _entry(origin, "queues", index, entry, _QUEUE_KEYS, lambda e: _make_queue(e, by_name))
        for index, entry in enumerate(_list(origin, document, "queues"))
    ]
    _no_duplicates(origin, "signals", [s.name for s in signals])
    _no_duplicates(origin, "queues", [q.name for q in queues])
    return Catalog(Namespace(signals, kind="signal"), Namespace(queues, kind="queue"))


def _list(origin: str, document: dict[str, Any], key: str) -> list[Any]:
    value = document.get(key, [])
    if not isinstance(value, list):
        raise CatalogError(f"{origin}: {key!r} must be a list")
    return value


def _entry(origin: str, section: str, index: int, entry: Any, keys: set[str], make: Any) -> Any:
    where = f"{origin}: {section}[{index}]"
    if not isinstance(entry, dict):
        raise CatalogError(f"{where}: each entry must be an object")
    if "name" in entry:
        where += f" ({entry['name']!r})"
    if unknown := set(entry) - keys:
        raise CatalogError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(keys)})")
    if "name" not in entry:
        raise CatalogError(f"{where}: 'name' is required")
    try:
        with private_catalog():  # the file is checked on its own first: errors name its entries
            return make(entry)
    except (ConfigurationError, TypeError) as exc:
        raise CatalogError(f"{where}: {exc}") from None


def _make_signal(entry: dict[str, Any]) -> Signal:
    args = entry.get("providing_args", [])
    if not isinstance(args, list):
        raise TypeError("'providing_args' must be a list of names")
    return Signal(entry["name"], args)


def _make_exchange(entry: dict[str, Any]) -> Exchange:
    kind = entry.get("type", "direct")
    if not isinstance(kind, str):
        raise TypeError("'type' must be a string")
    return Exchange(entry["name"], kind)


def _make_queue(entry: dict[str, Any], exchanges: dict[str, Exchange]) -> Queue:
    bindings = entry.get("bindings", [])
    if not isinstance(bindings, list):
        raise TypeError("'bindings' must be a list of {'exchange', 'key'} objects")
    found = []
    for index, binding in enumerate(bindings):
        where = f"bindings[{index}]"
        if not isinstance(binding, dict):
            raise TypeError(f"{where} must be an object")
        if unknown := set(binding) - _BINDING_KEYS:
            raise TypeError(f"{where}: unknown keys {sorted(unknown)} (allowed: exchange, key)")
        name, key = binding.get("exchange"), binding.get("key", "")
        if not isinstance(name, str) or not isinstance(key, str):
            raise TypeError(f"{where}: 'exchange' (a name) and 'key' must be strings")
        if name not in exchanges:
            known = ", ".join(sorted(exchanges)) or "none"
            raise ConfigurationError(
                f"{where}: exchange {name!r} is not declared in 'exchanges' (declared: {known})"
            )
        found.append(Binding(exchanges[name], key))
    payload = entry.get("payload", "json")
    address = entry.get("address")
    if not isinstance(payload, str):
        raise TypeError('\'payload\' must be "json", "text" or "bytes"')
    if address is not None and not isinstance(address, str):
        raise TypeError("'address' must be the engine object's name (a string)")
    args = entry.get("providing_args")
    if args is not None and not isinstance(args, list):
        raise TypeError("'providing_args' must be a list of names (a task's arguments)")
    return Queue(
        entry["name"], bindings=found, payload=payload, address=address, providing_args=args
    )


def _no_duplicates(origin: str, section: str, names: list[str]) -> None:
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            raise CatalogError(
                f"{origin}: {section}[{index}] ({name!r}): duplicate name, "
                f"first declared at {section}[{seen[name]}]"
            )
        seen[name] = index
