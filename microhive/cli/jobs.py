"""``microhive job show|revoke ID`` and ``microhive jobs [--queue Q] [--state S]``."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import click

from ..errors import MicroHiveError
from ..tasks.store import JobRecord, JobState
from .common import Options, connection_options, guarded, resolve_options

STATES = [state.value for state in JobState if state is not JobState.UNKNOWN]


def _text(data: bytes | None) -> str:
    return "" if data is None else data.decode(errors="replace")


def _when(moment: float | None) -> str:
    if not moment:
        return ""
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).isoformat(timespec="seconds")


def as_dict(record: JobRecord) -> dict[str, Any]:
    """A record as JSON-ready values (result and progress as the JSON text they are)."""
    return {
        "id": record.id,
        "queue": record.queue,
        "state": record.state.value,
        "result": _text(record.result) or None,
        "error_type": record.error_type,
        "error_message": record.error_message,
        "progress": _text(record.progress) or None,
        "attempt": record.attempt,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "members": list(record.members),
        "meta": record.meta,
    }


async def _with_store(options: Options, work: Any) -> Any:
    from ..broker import QueueBroker
    from ..tasks.stores import store_for

    async with QueueBroker.from_url(options.broker_url) as broker:
        return await work(store_for(broker), broker)


@click.group()
def job() -> None:
    """Inspect or revoke one job by its id."""


@job.command()
@click.argument("job_id")
@connection_options
@guarded
def show(job_id: str, as_json: bool, **common: Any) -> None:
    """The state, result or error, and times of JOB_ID."""
    options = resolve_options(as_json=as_json, **common)

    async def work(store: Any, broker: Any) -> JobRecord | None:
        found: JobRecord | None = await store.get(job_id)
        return found

    record = asyncio.run(_with_store(options, work))
    if record is None:
        if options.as_json:
            options.emit_json({"id": job_id, "state": JobState.UNKNOWN.value})
        else:
            click.echo(f"{job_id}: unknown (nobody submitted it, or its record expired)")
        return
    fields = as_dict(record)
    if options.as_json:
        options.emit_json(fields)
        return
    for name in ("created_at", "started_at", "finished_at"):
        fields[name] = _when(fields[name])
    rows = [(name, "" if value is None else value) for name, value in fields.items()]
    options.table(f"job {job_id}", ["field", "value"], rows)


@job.command()
@click.argument("job_id")
@click.option("--reason", default="revoked from the command line", help="Stored as its error.")
@connection_options
@guarded
def revoke(job_id: str, reason: str, as_json: bool, **common: Any) -> None:
    """Revoke JOB_ID: pending, it never runs; running, it stops at its next progress report."""
    options = resolve_options(as_json=as_json, **common)

    async def work(store: Any, broker: Any) -> tuple[bool, JobState]:
        done = await broker.job(job_id).revoke(reason)
        return done, await broker.job(job_id).status()

    done, state = asyncio.run(_with_store(options, work))
    if options.as_json:
        options.emit_json({"id": job_id, "revoked": done, "state": state.value})
    elif done:
        click.echo(f"{job_id}: revoked")
    else:
        raise MicroHiveError(f"{job_id} was not revoked: it is {state.value}")


@click.command()
@click.option("--queue", help="Only jobs of this task queue.")
@click.option("--state", type=click.Choice(STATES), help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@connection_options
@guarded
def jobs(queue: str | None, state: str | None, limit: int, as_json: bool, **common: Any) -> None:
    """Recent jobs, newest first, by queue and state."""
    options = resolve_options(as_json=as_json, **common)
    wanted = JobState(state) if state is not None else None

    async def work(store: Any, broker: Any) -> list[JobRecord]:
        found: list[JobRecord] = await store.jobs(queue=queue, state=wanted, limit=limit)
        return found

    records = asyncio.run(_with_store(options, work))
    if options.as_json:
        for record in records:
            options.emit_json(as_dict(record))
        return
    rows = [
        (r.id, r.queue, r.state.value, r.attempt, _when(r.created_at), _summary(r)) for r in records
    ]
    options.table("jobs", ["id", "queue", "state", "attempt", "created", "result / error"], rows)


def _summary(record: JobRecord, width: int = 60) -> str:
    if record.state is JobState.SUCCEEDED:
        text = _text(record.result)
    elif record.error_type:
        text = f"{record.error_type}: {record.error_message or ''}"
    else:
        text = ""
    return text if len(text) <= width else text[: width - 1] + "…"
