"""Workflows survive crashes, with real processes: SIGKILL the caller right after submit, or
a worker in the middle of a group — every step runs at least once, the chord's callback
exactly once, and the results are right (docs/tasks.md, Guarantees)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from microhive import QueueBroker

from ..cli.helpers import Process
from ..processes import ready, stop, until
from .crash_agents import QUEUES, nested_result

WORKER = "tests.tasks.crash_agents:Worker"


def runs(base: Path) -> Counter[str]:
    """``"<task> <job id>"`` lines of every worker process, counted."""
    counts: Counter[str] = Counter()
    for path in base.parent.glob(f"{base.name}.*"):
        counts.update(path.read_text().splitlines())
    return counts


def worker(url: str, base: Path) -> Process:
    return Process(
        "-m", "microhive", "run", WORKER, "--transport", url, "--grace-period", "1",
        env={"MH_TEST_RECORD": str(base)},
    )  # fmt: skip


def caller(url: str, size: int, pause: float) -> Process:
    return Process("-m", "tests.tasks.crash_agents", url, str(size), str(pause))


async def submitted(process: Process) -> list[str]:
    line = await asyncio.to_thread(process.wait_for_line, r"^submitted ", 30)
    return line.split()[1:]


async def test_the_caller_killed_right_after_submit(url: str, tmp_path: Path) -> None:
    base = tmp_path / "runs"
    size = 20
    who = caller(url, size, 0.0)
    try:
        chord_id, chain_id, nested_id = await submitted(who)
        who.popen.kill()  # SIGKILL: nothing of the caller is left to carry the workflows on
        who.wait(timeout=10)
    finally:
        who.kill()
    work = worker(url, base)
    try:
        await ready(work)
        async with QueueBroker.from_url(url, queues=QUEUES) as broker:
            assert await broker.job(chord_id).result(timeout=60) == size * (size - 1)
            assert await broker.job(chain_id).result(timeout=60) == 128
            assert await broker.job(nested_id).result(timeout=60) == nested_result(size)
        assert stop(work) == 0, work.output
    finally:
        work.kill()
    done = runs(base)
    assert done[f"xsum {chord_id}"] == 1
    assert done[f"xsum {nested_id}"] == 1
    flat = [line for line in done if line.startswith("add ") and nested_id not in line]
    assert len(flat) == size + 1


async def test_a_worker_killed_in_the_middle_of_a_group(url: str, tmp_path: Path) -> None:
    base = tmp_path / "runs"
    size = 200
    first, second = worker(url, base), worker(url, base)
    who: Process | None = None
    try:
        await ready(first)
        await ready(second)
        who = caller(url, size, 0.05)
        chord_id, chain_id, nested_id = await submitted(who)
        killed = base.parent / f"{base.name}.{first.popen.pid}"

        def mid_group() -> bool:
            return killed.exists() and len(killed.read_text().splitlines()) >= 20

        await until(mid_group, 60, "the first worker to be in the middle of the group")
        first.popen.kill()
        first.wait(timeout=10)
        async with QueueBroker.from_url(url, queues=QUEUES) as broker:
            assert await broker.job(chord_id).result(timeout=120) == size * (size - 1)
            assert await broker.job(chain_id).result(timeout=120) == 128
            assert await broker.job(nested_id).result(timeout=120) == nested_result(size)
        assert stop(second) == 0, second.output
    finally:
        first.kill()
        second.kill()
        if who is not None:
            who.kill()
    done = runs(base)
    members = {f"add {chord_id}.header.{i}" for i in range(size)}
    assert members <= set(done), "every member ran at least once"
    assert done[f"xsum {chord_id}"] == 1, "the chord's callback ran exactly once"
    nested = {f"mul {nested_id}.1.{i}" for i in range(size)}
    assert nested <= set(done), "every member chain of the nested workflow ran to its end"
    assert done[f"xsum {nested_id}"] == 1, "the nested chord's callback ran exactly once"
    again = sum(done[m] - 1 for m in members)
    print(f"worker SIGKILLed mid-group: {again} of {size} members ran twice")
