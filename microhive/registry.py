"""The catalog of everything a program declared, so names resolve anywhere in it.

As in the seed talk, a program declares its signals and queues once — ``load_stuff(...)``,
a catalog on the command line, ``Signal(...)``/``Queue(...)`` in a module — and then any
agent, or a bare bus or broker, addresses them by name (``bus.user_enter.send(...)``)
without passing catalogs around. Each declaration is recorded in the **active registry**:
the program's default one, or a private one inside :func:`private_catalog` (tests,
tenants: two catalogs in one process). Declaring one name twice with different shapes is an
error that names both places; the same shape twice (a catalog loaded by two modules) is fine.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigurationError

_PACKAGE = str(Path(__file__).resolve().parent)


@dataclass
class Registry:
    """Declarations by kind and name, each with the place it was first declared."""

    name: str = "default"
    entries: dict[tuple[str, str], tuple[Any, str]] = field(default_factory=dict)

    def add(self, kind: str, item: Any, shape: Any) -> None:
        key = (kind, item.name)
        found = self.entries.get(key)
        where = _declared_at()
        if found is None:
            self.entries[key] = (item, where)
            return
        other, other_where = found
        if _shape(other) != shape:
            raise ConfigurationError(
                f"{kind} {item.name!r} is declared twice with different shapes: "
                f"{_describe(other)} at {other_where} and {_describe(item)} at {where} (use "
                "one declaration, or microhive.private_catalog() to keep programs apart)"
            )

    def get(self, kind: str, name: str) -> Any:
        found = self.entries.get((kind, name))
        return None if found is None else found[0]

    def names(self, kind: str) -> list[str]:
        return sorted(name for k, name in self.entries if k == kind)

    def __repr__(self) -> str:
        return f"<Registry {self.name!r}: {len(self.entries)} declarations>"


def _describe(item: Any) -> str:
    describe = getattr(item, "describe", None)
    return describe() if callable(describe) else repr(item)


def _shape(item: Any) -> Any:
    shape = getattr(item, "shape", None)
    return shape() if callable(shape) else item


DEFAULT = Registry("default")
_ACTIVE: ContextVar[Registry] = ContextVar("microhive_registry", default=DEFAULT)
_ORIGIN: ContextVar[str | None] = ContextVar("microhive_declaring_from", default=None)


def active_registry() -> Registry:
    """Where declarations made now are recorded, and where bare buses and brokers made now
    look names up."""
    return _ACTIVE.get()


@contextmanager
def private_catalog(name: str = "private") -> Iterator[Registry]:
    """Declarations made inside, and buses, brokers and agents created inside, use a fresh
    registry of their own instead of the program's default one.

    ``with microhive.private_catalog():`` in a test keeps its declarations from meeting
    another test's; a multi-tenant program gives each tenant one.
    """
    token = _ACTIVE.set(Registry(name))
    try:
        yield _ACTIVE.get()
    finally:
        _ACTIVE.reset(token)


@contextmanager
def declaring_from(origin: str) -> Iterator[None]:
    """Declarations made inside are said to come from ``origin`` (a catalog file's entry)."""
    token = _ORIGIN.set(origin)
    try:
        yield
    finally:
        _ORIGIN.reset(token)


def _declared_at() -> str:
    """The place of a declaration: a catalog entry, or the first frame outside microhive."""
    origin = _ORIGIN.get()
    if origin is not None:
        return origin
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "<unknown>"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"
