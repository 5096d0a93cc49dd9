"""Logging with context: every record says which agent, handler, message and sender.

The context lives in a ContextVar, so each handler task carries its own; records get it as
``record.microhive`` (a dict) and ``record.context`` (text), which formatters can show.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .envelope import Envelope

_CONTEXT: ContextVar[dict[str, str]] = ContextVar("microhive_log_context", default={})  # noqa: B039

_HANDLING: ContextVar[tuple[str, Envelope] | None] = ContextVar("microhive_handling", default=None)
"""The handler running in this task and the message it handles: set once per message, the
log fields ``handler``, ``msg`` and ``sender`` are derived from it only when a record is made."""

FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(context)s] %(message)s"


def current_context() -> dict[str, str]:
    context = _CONTEXT.get()
    handling = _HANDLING.get()
    if handling is None:
        return context
    handler, envelope = handling
    fields = {**context, "handler": handler, "msg": envelope.id}
    if envelope.sender:
        fields["sender"] = envelope.sender
    return fields


def enter_handling(handler: str, envelope: Envelope) -> Token[tuple[str, Envelope] | None]:
    """Mark this task as handling ``envelope`` with ``handler`` until :func:`leave_handling`."""
    return _HANDLING.set((handler, envelope))


def leave_handling(token: Token[tuple[str, Envelope] | None]) -> None:
    _HANDLING.reset(token)


def handled_message() -> Envelope | None:
    handling = _HANDLING.get()
    return None if handling is None else handling[1]


def enter_context(**fields: str | None) -> Token[dict[str, str]]:
    """Add fields to the log context of the current task until :func:`leave_context`."""
    return _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v}})


def leave_context(token: Token[dict[str, str]]) -> None:
    _CONTEXT.reset(token)


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add fields to the log context of the current task for the duration of the block."""
    token = enter_context(**fields)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def render(context: dict[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in context.items())


class AgentLogger(logging.LoggerAdapter[logging.Logger]):
    """``self.log`` of an agent: adds the agent's name and the current task's context."""

    def __init__(self, logger: logging.Logger, agent: str) -> None:
        super().__init__(logger, {"agent": agent})
        self.agent = agent

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        context = {"agent": self.agent, **current_context()}
        extra = kwargs.setdefault("extra", {})
        extra.setdefault("microhive", context)
        extra.setdefault("context", render(context))
        return msg, kwargs


class ContextFilter(logging.Filter):
    """Makes ``%(context)s`` safe in formats for records that came without context."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "context"):
            context = current_context()
            record.microhive = context
            record.context = render(context)
        return True


def configure(level: str | int = "INFO") -> None:
    """Log to stderr with context; what ``microhive run`` uses."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
