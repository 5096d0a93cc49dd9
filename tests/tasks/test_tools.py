"""Tasks from blocking code (microhive.sync) and from the shell (microhive jobs / job)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from microhive import JobState, ResultTimeout, TaskRevoked
from microhive.sync import Publisher

from ..cli.helpers import run
from ..processes import ready, stop
from .crash_agents import QUEUES
from .test_crashes import worker


def cli(*args: str) -> str:
    done = run("-m", "microhive", *args, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_sync_submit_result_and_the_job_commands(url: str, tmp_path: Path) -> None:
    work = worker(url, tmp_path / "runs")
    try:
        await ready(work)
        with Publisher(url, queues=QUEUES, sender="script") as publisher:
            job = await asyncio.to_thread(publisher.submit, QUEUES.crash_add.s(x=1, y=2, pause=0))
            assert await asyncio.to_thread(job.result, 30) == 3
            assert await asyncio.to_thread(job.status) is JobState.SUCCEEDED
            later = await asyncio.to_thread(
                publisher.submit, QUEUES.crash_mul.s(x=2, y=3), delay=600
            )
            with pytest.raises(ResultTimeout):
                await asyncio.to_thread(later.result, 0.2)
        listed = [json.loads(line) for line in cli("jobs", "--broker", url, "--json").splitlines()]
        assert {(r["id"], r["state"]) for r in listed} >= {(job.id, "succeeded")}
        shown = json.loads(cli("job", "show", job.id, "--broker", url, "--json"))
        assert shown["result"] == "3" and shown["queue"] == "crash_add"
        revoked = json.loads(cli("job", "revoke", later.id, "--broker", url, "--json"))
        assert revoked == {"id": later.id, "revoked": True, "state": "revoked"}
        pending = cli("jobs", "--broker", url, "--state", "revoked", "--queue", "crash_mul")
        assert later.id in pending
        unknown = json.loads(cli("job", "show", "nobody", "--broker", url, "--json"))
        assert unknown == {"id": "nobody", "state": "unknown"}
        with Publisher(url, queues=QUEUES) as publisher, pytest.raises(TaskRevoked):
            publisher.job(later.id).result(timeout=5)
        assert stop(work) == 0, work.output
    finally:
        work.kill()
