"""The envelope: what every message carries on the wire, whatever the transport."""

from __future__ import annotations

import enum
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


class Kind(enum.StrEnum):
    SIGNAL = "signal"
    MESSAGE = "message"
    CALL = "call"
    REPLY = "reply"


_ids = random.Random()
"""microhive's own generator: a program (or hypothesis) that seeds the global ``random``
must not make message ids repeat — consumers de-duplicate by them."""
os.register_at_fork(after_in_child=_ids.seed)  # a forked child must not repeat its parent's
_getrandbits = _ids.getrandbits


def new_id() -> str:
    """A random 128-bit id in hex.

    A generator of microhive's own (seeded from the OS, reseeded in forked children, never
    by the program's ``random.seed``) is several times cheaper than ``os.urandom``, and ids
    only need to be unique, not secret.
    """
    return _getrandbits(128).to_bytes(16).hex()


@dataclass(slots=True)
class Envelope:
    """One message. ``attempt`` starts at 1 and grows with each retry of a queue message.

    Treat it as read-only: :meth:`next_attempt` makes the changed copy. (It is not a frozen
    dataclass because a frozen one costs a microsecond more to build, on every message.)
    """

    kind: Kind
    name: str
    payload: Any
    sender: str = ""
    id: str = field(default_factory=new_id)
    headers: Mapping[str, str] = field(default_factory=dict)
    correlation_id: str | None = None
    reply_to: str | None = None
    sent_at: float = field(default_factory=time.time)
    attempt: int = 1

    def next_attempt(self, **headers: str) -> Envelope:
        """The same message for its next delivery attempt, with extra headers."""
        merged = {**self.headers, **headers} if headers else self.headers
        return replace(self, attempt=self.attempt + 1, headers=merged)
