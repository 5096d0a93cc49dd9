"""Which names signals, queues and exchanges may take: one rule for every engine, and none
that ``bus.<name>`` / ``broker.<name>`` could not reach."""

from __future__ import annotations

import re

from pydantic import ValidationError

from .errors import ConfigurationError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")

SHADOWING_NAMES = frozenset(
    {
        # buses, brokers, their handles and an agent's views (tests/core keep this complete)
        "broker", "bus", "call", "capabilities", "close", "codec", "connect", "connected",
        "consume", "dead_letters", "from_url", "gather", "inbox", "length", "publish", "queue",
        "queues", "reply", "send", "sender", "signal", "signals", "subscribe", "tail",
        "transport", "url", "declaration", "registry", "middleware", "hooks", "prefix",
        "options", "stats",
        # and the names the API is growing into (tasks, dead-letter work, declarations)
        "declare", "dead", "job", "purge", "requeue", "submit",
        # a Namespace's own methods (``queues.values`` is the method)
        "get", "items", "keys", "merge", "values",
    }
)  # fmt: skip
"""Names that ``bus.<name>`` / ``broker.<name>`` could never reach as a signal or queue."""


def check_name(kind: str, name: str) -> str:
    """``name`` when a declaration may take it: reachable as ``bus.<name>``/``broker.<name>``
    and valid on every engine; else ConfigurationError."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigurationError(
            f"invalid {kind} name {name!r}: use letters, digits, '_', '.', '-' (at most 200)"
        )
    if name in SHADOWING_NAMES:
        where = "bus.signal" if kind == "signal" else "broker.queue"
        raise ConfigurationError(
            f"{kind} name {name!r} is also a method or attribute of buses and brokers, so "
            f"`{kind[0]}.{name}` could not reach it: choose another name (an existing engine "
            f"{kind} of that name is reachable undeclared as {where}({name!r}))"
        )
    return name


def schema_errors(error: ValidationError) -> str:
    """A pydantic error as one line naming each field, for PayloadError messages."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "payload"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)
