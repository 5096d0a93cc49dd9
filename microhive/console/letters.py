"""Dead letters for the page: each with a key that names it, and requeue or purge of one
letter (by key) or of those a :class:`~microhive.deadletters.Selection` chooses."""

from __future__ import annotations

import hashlib
from typing import Any

from ..broker import DeadLetter, QueueBroker
from ..cli.queues import envelope_data
from ..deadletters import Selection, identity
from ..errors import ConfigurationError

LIST_LIMIT = 1000
"""The page looks at this many of the oldest dead letters at most."""


class NoSuchLetter(LookupError):
    """The letter is not (or no longer) among the queue's dead letters."""


def key_of(letter: DeadLetter) -> str:
    """A short name for one dead letter, stable while it stays dead (its :func:`identity`)."""
    dead_at, reason, raw = identity(letter)
    digest = hashlib.blake2s(f"{dead_at!r}\x00{reason}\x00".encode() + raw, digest_size=10)
    return digest.hexdigest()


def letter_data(letter: DeadLetter) -> dict[str, Any]:
    """One dead letter as JSON: why and when it died, and its message (or its raw bytes)."""
    data: dict[str, Any] = {
        "key": key_of(letter),
        "queue": letter.queue,
        "reason": letter.reason,
        "attempt": letter.attempt,
        "dead_at": letter.dead_at,
    }
    if letter.envelope is not None:
        data["envelope"] = envelope_data(letter.envelope)
    else:
        data["raw"] = letter.raw.decode("utf-8", "backslashreplace")
    return data


def selection_from(body: dict[str, Any]) -> Selection:
    """The filters a request gave (``reason``, ``older_than``, ``limit``); bad ones raise
    :class:`ConfigurationError` with what is wrong."""
    unknown = set(body) - {"reason", "older_than", "limit", "key", "to"}
    if unknown:
        raise ConfigurationError(f"unknown field(s) {sorted(unknown)}")
    reason = body.get("reason") or None
    older_than = body.get("older_than")
    limit = body.get("limit")
    return Selection(reason, older_than, limit)


async def listing(broker: QueueBroker, queue: str, selection: Selection) -> list[DeadLetter]:
    return selection.choose(await broker.queue(queue).dead_letters(LIST_LIMIT))


async def operate(
    broker: QueueBroker, verb: str, queue: str, body: dict[str, Any]
) -> dict[str, Any]:
    """``verb`` ("requeue" or "purge") the letter named ``body["key"]``, or the letters the
    filters choose (all of them without filters); returns how many."""
    selection = selection_from(body)
    to = body.get("to") or None
    if to is not None and (verb != "requeue" or not isinstance(to, str)):
        raise ConfigurationError("'to' is a queue name, and only for requeue")
    key = body.get("key")
    if key is not None:
        if not isinstance(key, str):
            raise ConfigurationError("'key' must be a string")
        found = [
            letter for letter in await listing(broker, queue, Selection()) if key_of(letter) == key
        ]
        if not found:
            raise NoSuchLetter(f"no dead letter {key!r} in queue {queue!r} (handled already?)")
        if verb == "requeue":
            count = await broker.requeue(queue, to=to, letters=found[:1])
        else:
            count = await broker.purge(queue, letters=found[:1])
    elif verb == "requeue":
        count = await broker.requeue(
            queue, to=to, reason=selection.reason, older_than=selection.older_than,
            limit=selection.limit,
        )  # fmt: skip
    else:
        count = await broker.purge(
            queue, reason=selection.reason, older_than=selection.older_than, limit=selection.limit
        )
    return {"queue": queue, verb + "d": count, **({"to": to} if to else {})}
