"""The answers to a call: a :class:`Reply` each, decoded from the engine's reply envelopes,
and the checks a call's arguments pass before anything is sent."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

from .declarations import Signal
from .envelope import Envelope, Kind
from .errors import DecodeError, PayloadError, RemoteError


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer to a call, as ``gather()`` returns it."""

    responder: str
    value: Any = None
    error: RemoteError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Gathering:
    """The replies of one ``gather()`` so far, and the future set once ``expect`` came."""

    __slots__ = ("done", "expect", "replies")

    def __init__(self, expect: int | None) -> None:
        self.replies: list[Reply] = []
        self.expect = expect
        self.done = asyncio.get_running_loop().create_future()


def bad_sender(sender: object) -> PayloadError:
    """The error for a ``sender`` that is not a string (the sending agent's name)."""
    return PayloadError(
        f"sender must be a string (the sending agent's name), got {type(sender).__name__}"
    )


def check_timeout(signal: Signal, timeout: object) -> None:
    """A call waits a positive, finite time: 0, a negative number or inf would never answer."""
    if (
        not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise PayloadError(
            f"call {signal.name!r}: timeout must be a number of seconds > 0, got {timeout!r}"
        )


def reply_from(envelope: Envelope) -> Reply:
    """The reply an envelope carries; DecodeError when it is not a well-formed reply."""
    payload = envelope.payload
    if envelope.kind is not Kind.REPLY or not isinstance(payload, dict) or "ok" not in payload:
        raise DecodeError("a reply must be {'ok': bool, 'value'|'error': ...}")
    if payload["ok"]:
        return Reply(envelope.sender, payload.get("value"))
    error = payload.get("error") or {}
    if not isinstance(error, dict):
        error = {"message": str(error)}
    remote = RemoteError(
        str(error.get("type", "Exception")), str(error.get("message", "")), envelope.sender
    )
    return Reply(envelope.sender, None, remote)
