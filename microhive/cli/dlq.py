"""``microhive dlq list|show|requeue|purge QUEUE``: a queue's dead letters, from the shell."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from ..broker import DeadLetter, QueueHandle
from ..deadletters import Selection
from .bulk import STEP, Outcome, Report, in_steps
from .common import F, Options, connection_options, fail, guarded, resolve_options
from .queues import envelope_data, timestamp

LIST_LIMIT = 1000
"""``list`` and ``show`` look at this many of the oldest dead letters at most."""

LIST_ALL = 10**9
"""As many as there are: where an engine cannot count its dead letters, a filtered bulk
operation lists them all to know its total."""


def filters(command: F) -> F:
    """``--reason``/``--older-than``/``--limit``: the filters of the dead-letter API."""
    for option in (
        click.option(
            "--limit", type=click.IntRange(min=0), help="At most this many, oldest first."
        ),
        click.option("--older-than", type=click.FloatRange(min=0), help="Dead for over S seconds."),
        click.option("--reason", help="Only those whose reason contains this text."),
    ):
        command = option(command)
    return command


@click.group()
def dlq() -> None:
    """A queue's dead letters: list, show one, requeue or purge them."""


async def _chosen(options: Options, queue: str, selection: Selection) -> list[DeadLetter]:
    from ..broker import QueueBroker

    async with QueueBroker.from_url(options.broker_url) as broker:
        return selection.choose(await broker.queue(queue).dead.list(LIST_LIMIT))


def _summary(letter: DeadLetter) -> dict[str, Any]:
    envelope = letter.envelope
    return {
        "queue": letter.queue,
        "id": envelope.id if envelope is not None else None,
        "dead_at": letter.dead_at,
        "attempt": letter.attempt,
        "reason": letter.reason,
    }


@dlq.command(name="list")
@click.argument("queue")
@filters
@connection_options
@guarded
def list_command(
    queue: str,
    reason: str | None,
    older_than: float | None,
    limit: int | None,
    as_json: bool,
    **common: Any,
) -> None:
    """The dead letters of QUEUE, oldest first: number, id, when, attempt, reason."""
    options = resolve_options(as_json=as_json, **common)
    letters = asyncio.run(_chosen(options, queue, Selection(reason, older_than, limit)))
    if options.as_json:
        for letter in letters:
            options.emit_json(_summary(letter))
        return
    options.table(
        f"dead letters of {queue}",
        ("#", "id", "dead at", "attempt", "reason"),
        [
            (
                number,
                letter.envelope.id if letter.envelope is not None else "(undecodable)",
                timestamp(letter.dead_at),
                letter.attempt,
                letter.reason,
            )
            for number, letter in enumerate(letters, 1)
        ],
    )


def _raw_text(raw: bytes) -> dict[str, str]:
    try:
        return {"raw_text": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"raw_hex": raw.hex()}


@dlq.command()
@click.argument("queue")
@click.argument("which", required=False, default="1", metavar="[N|ID]")
@filters
@connection_options
@guarded
def show(
    queue: str,
    which: str,
    reason: str | None,
    older_than: float | None,
    limit: int | None,
    as_json: bool,
    **common: Any,
) -> None:
    """One dead letter in full: the N-th of `list` (default the oldest) or the one with ID."""
    options = resolve_options(as_json=as_json, **common)
    letters = asyncio.run(_chosen(options, queue, Selection(reason, older_than, limit)))
    letter = _pick(letters, which)
    document: dict[str, Any] = _summary(letter)
    if letter.envelope is not None:
        document["envelope"] = envelope_data(letter.envelope)
    else:
        document.update(_raw_text(letter.raw))
    if options.as_json:
        options.emit_json(document)
        return
    for field in ("queue", "id", "reason", "attempt"):
        click.echo(f"{field}: {document[field]}")
    click.echo(f"dead_at: {timestamp(letter.dead_at)}")
    if "envelope" in document:
        click.echo("envelope:")
        click.echo(json.dumps(document["envelope"], indent=2, ensure_ascii=False, default=str))
    elif "raw_text" in document:
        click.echo(f"raw (text, undecodable): {document['raw_text']}")
    else:
        click.echo(f"raw (hex, undecodable): {document['raw_hex']}")


def _pick(letters: list[DeadLetter], which: str) -> DeadLetter:
    if which.isdigit():
        number = int(which)
        if 1 <= number <= len(letters):
            return letters[number - 1]
        fail(f"no dead letter number {number} (there are {len(letters)})", 1)
    for letter in letters:
        if letter.envelope is not None and letter.envelope.id == which:
            return letter
    fail(f"no dead letter with id {which!r}", 1)


def _bulk(verb: str, operate: Callable[..., Any]) -> Callable[..., None]:
    def command(
        queue: str,
        reason: str | None,
        older_than: float | None,
        limit: int | None,
        step: int,
        as_json: bool,
        to: str | None = None,
        **common: Any,
    ) -> None:
        from ..broker import QueueBroker

        options = resolve_options(as_json=as_json, **common)
        extra = {"to": to} if to is not None else {}
        selection = Selection(reason, older_than, limit)
        where = f" to {to}" if to is not None else ""

        async def work() -> Outcome:
            async with QueueBroker.from_url(options.broker_url) as broker:
                handle = broker.queue(queue)
                total = await _total(handle, selection)

                async def one_step(size: int) -> int:
                    done: int = await operate(
                        handle.dead, reason=reason, older_than=older_than, limit=size, **extra
                    )
                    return done

                with Report(verb, queue, quiet=options.as_json) as report:
                    return await in_steps(one_step, total, step, report)

        try:
            outcome = asyncio.run(work())
        except asyncio.CancelledError:  # a second Ctrl-C
            fail(
                f"stopped at once: the step under way ({step} letters at most) may be "
                "duplicated; run the command again for the rest",
                130,
            )
        if options.as_json:
            document = {"queue": queue, verb: outcome.done, **extra}
            if outcome.interrupted:
                document.update(interrupted=True, left=outcome.total - outcome.done)
            options.emit_json(document)
        elif outcome.interrupted:
            click.echo(
                f"interrupted: {verb} {outcome.done} of {outcome.total} dead letter(s) of "
                f"{queue}{where}; the other {outcome.total - outcome.done} are still dead letters"
            )
        else:
            click.echo(f"{verb} {outcome.done} dead letter(s) of {queue}{where}")
        if outcome.interrupted:
            sys.exit(130)

    return command


async def _total(handle: QueueHandle, selection: Selection) -> int:
    """How many letters the operation will take (its progress bar's end)."""
    dead = (await handle.stats()).dead_letters
    if dead is None or selection.reason is not None or selection.older_than is not None:
        letters = await handle.dead.list(LIST_ALL if dead is None else dead)
        dead = len(selection.choose(letters))
    return dead if selection.limit is None else min(dead, selection.limit)


def stepped(command: F) -> F:
    """``--step N``: letters per step (Ctrl-C stops between steps, microhive/cli/bulk.py)."""
    return click.option(
        "--step",
        type=click.IntRange(min=1),
        default=STEP,
        show_default=True,
        help="Letters per step; Ctrl-C stops after the step under way, losing nothing.",
    )(command)


def _requeue(dead: Any, **kwargs: Any) -> Any:
    return dead.requeue(**kwargs)


def _purge(dead: Any, **kwargs: Any) -> Any:
    return dead.purge(**kwargs)


requeue = dlq.command(
    name="requeue",
    help="Send the chosen dead letters back as first attempts (to --to, default QUEUE).",
)(
    click.argument("queue")(
        click.option("--to", help="Replay them on this queue instead.")(
            filters(stepped(connection_options(guarded(_bulk("requeued", _requeue)))))
        )
    )
)

purge = dlq.command(name="purge", help="Delete the chosen dead letters for good.")(
    click.argument("queue")(filters(stepped(connection_options(guarded(_bulk("purged", _purge))))))
)
