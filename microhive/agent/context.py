"""The message being handled, reachable from anywhere in its handler's task."""

from __future__ import annotations

from contextvars import ContextVar

from ..envelope import Envelope

_MESSAGE: ContextVar[Envelope | None] = ContextVar("microhive_message", default=None)


def current_message() -> Envelope | None:
    """The envelope the current handler is processing (id, sender, headers, attempt...)."""
    return _MESSAGE.get()
