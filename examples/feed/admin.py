"""The admin page: the feed's dead letters, and what an operator does with them.

An event lands in the dead letters when the feed cannot take it: a bad shape (the schema's
validation error is the reason), bytes that are not JSON, a like of an event that never
arrived. The page lists each one with its reason, sender and payload, and offers:

- **Requeue**: send it back as it is — after the feed's code was fixed to accept it (or once
  what it was waiting for arrived). One letter, or every letter whose reason contains a text.
- **Fix and send**: edit the payload; it is checked against the schema here (so a still
  broken fix is refused on the page, not dead-lettered again), sent to the queue under the
  dead letter's message id (header ``x-fixes``: the feed stores it once), and only then is
  the dead letter removed.
- **Purge**: drop it for good.
"""

from __future__ import annotations

import hashlib
import json
import time
from html import escape
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from microhive import DeadLetter, QueueBroker

from .agent import FIXES
from .events import EVENTS, Event
from .registrar import broker_of

LIMIT = 500
"""How many dead letters the page shows at most (the oldest)."""

PAGE = (Path(__file__).parent / "templates" / "admin.html").read_text()

Broker = Annotated[QueueBroker, Depends(broker_of)]
Text = Annotated[str, Form()]

router = APIRouter(tags=["admin"])


def key(letter: DeadLetter) -> str:
    """A stable name for one dead letter (also for bytes that never decoded)."""
    digest = hashlib.sha256(f"{letter.dead_at!r}|{letter.reason}|".encode() + letter.raw)
    return digest.hexdigest()[:20]


def payload_text(letter: DeadLetter) -> str:
    """The payload as an operator edits it: pretty JSON, or the raw text."""
    if letter.envelope is not None:
        return json.dumps(letter.envelope.payload, indent=2, ensure_ascii=False, default=str)
    return letter.raw.decode("utf-8", errors="replace")


def summary(letter: DeadLetter) -> dict[str, Any]:
    envelope = letter.envelope
    return {
        "key": key(letter),
        "message_id": envelope.id if envelope is not None else None,
        "sender": envelope.sender if envelope is not None else None,
        "reason": letter.reason,
        "attempt": letter.attempt,
        "dead_at": letter.dead_at,
        "payload": envelope.payload if envelope is not None else None,
        "raw": None if envelope is not None else letter.raw.decode("utf-8", errors="replace"),
    }


async def letters(broker: QueueBroker) -> list[DeadLetter]:
    return await broker.dead_letters(EVENTS, LIMIT)


async def find(broker: QueueBroker, wanted: str) -> DeadLetter | None:
    return next((letter for letter in await letters(broker) if key(letter) == wanted), None)


def back(note: str, *, error: bool = False) -> RedirectResponse:
    query = urlencode({"error" if error else "note": note})
    return RedirectResponse(f"/admin?{query}", status_code=303)


@router.get("/api/dead")
async def dead(broker: Broker) -> list[dict[str, Any]]:
    """The dead letters of the feed's queue, oldest first."""
    return [summary(letter) for letter in await letters(broker)]


@router.get("/admin", response_class=HTMLResponse)
async def admin(request: Request, broker: Broker) -> str:
    found = await letters(broker)
    note = request.query_params.get("note")
    error = request.query_params.get("error")
    notes = "".join(
        f'<p class="note{" error" if is_error else ""}">{escape(text)}</p>'
        for text, is_error in ((note, False), (error, True))
        if text
    )
    rows = "".join(_row(letter) for letter in found) or (
        '<tr><td colspan="5" class="empty">No dead letters.</td></tr>'
    )
    return PAGE.format(notes=notes, count=len(found), queue=escape(EVENTS.name), rows=rows)


def _row(letter: DeadLetter) -> str:
    envelope = letter.envelope
    name = escape(key(letter))
    message_id = escape(envelope.id) if envelope is not None else "(undecodable)"
    sender = escape(envelope.sender or "?") if envelope is not None else "?"
    dead_at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(letter.dead_at))
    return f"""
<tr class="letter" data-key="{name}">
  <td><code>{message_id}</code><br>from <b>{sender}</b><br>{dead_at}</td>
  <td class="reason">{escape(letter.reason)}</td>
  <td><form method="post" action="/admin/resend" class="resend">
    <input type="hidden" name="key" value="{name}">
    <textarea name="payload">{escape(payload_text(letter))}</textarea>
    <button>Fix and send</button></form></td>
  <td><form method="post" action="/admin/requeue" class="inline">
    <input type="hidden" name="key" value="{name}"><button>Requeue</button></form>
  <form method="post" action="/admin/purge" class="inline">
    <input type="hidden" name="key" value="{name}"><button>Purge</button></form></td>
</tr>"""


GONE = "That dead letter is gone (requeued or purged meanwhile)."


async def chosen(broker: QueueBroker, key: str, reason: str) -> dict[str, Any] | None:
    """The filter of a bulk operation: one letter (``key``), or every letter whose reason
    contains ``reason`` (all of them if it is empty); None when the letter is gone."""
    if not key:
        return {"reason": reason or None}
    letter = await find(broker, key)
    return None if letter is None else {"letters": [letter]}


@router.post("/admin/requeue")
async def requeue(broker: Broker, key: Text = "", reason: Text = "") -> RedirectResponse:
    """Send letters back as they are: after a fix of the feed, or once what they waited
    for arrived."""
    which = await chosen(broker, key, reason)
    if which is None:
        return back(GONE, error=True)
    return back(f"Requeued {await broker.requeue(EVENTS, **which)} dead letter(s).")


@router.post("/admin/purge")
async def purge(broker: Broker, key: Text = "", reason: Text = "") -> RedirectResponse:
    which = await chosen(broker, key, reason)
    if which is None:
        return back(GONE, error=True)
    return back(f"Purged {await broker.purge(EVENTS, **which)} dead letter(s).")


@router.post("/admin/resend")
async def resend(broker: Broker, key: Text, payload: Text) -> RedirectResponse:
    """Send the fixed payload in the dead letter's place, then remove the dead letter."""
    letter = await find(broker, key)
    if letter is None:
        return back(GONE, error=True)
    try:
        event = Event.model_validate_json(payload)
    except ValidationError as exc:
        return back(f"Not sent, the fix is still not a valid event: {exc}", error=True)
    envelope = letter.envelope
    headers = {FIXES: envelope.headers.get(FIXES) or envelope.id} if envelope is not None else {}
    sender = envelope.sender if envelope is not None else ""
    message_id = await broker.send(EVENTS, event, headers=headers, sender=sender)
    await broker.purge(EVENTS, letters=[letter])
    return back(f"Sent the fixed event ({message_id}) and removed its dead letter.")
