"""The message being handled, reachable from anywhere in its handler's task."""

from __future__ import annotations

from ..envelope import Envelope
from ..logs import handled_message


def current_message() -> Envelope | None:
    """The envelope the current handler is processing (id, sender, headers, attempt...)."""
    return handled_message()
