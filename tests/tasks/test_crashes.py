"""Workflows survive crashes, with real processes: SIGKILL the caller right after submit, a
worker in the middle of a group, or the worker that enqueues a chord's callback — every step
runs at least once, the chord's callback exactly once, and the results are right
(docs/tasks.md, Guarantees).

On every engine other processes can reach (the contract suite's, one namespace per test): a
dead worker's unsettled tasks come back at once on RabbitMQ (its connection closes), after
``claim_idle`` (1 s) on Redis, ``ack_wait`` (1 s) on NATS and the group's session timeout
(2 s) on Kafka. RabbitMQ and Kafka keep results in Redis under a prefix of the test's own.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from microhive import QueueBroker, ResultTimeout
from tests.contract import conftest as contract
from tests.contract.conftest import Transport
from tests.contract.task_agents import forget_results, task_url

from ..cli.helpers import Process
from ..processes import ready, stop, until
from .crash_agents import CALLBACK_DUE, CALLBACK_SENT, QUEUES, nested_result

# the contract suite's engines: one namespace per test on each, deleted afterwards
engine, transport, url = contract.engine, contract.transport, contract.url

pytestmark = pytest.mark.slow

AGENTS = "tests.tasks.crash_agents"


@pytest.fixture
async def where(transport: Transport, url: str) -> AsyncIterator[str]:
    """The test's broker URL with a result store. An engine no other process can reach
    (memory) is skipped: its workflows live and die with the one process."""
    if not QueueBroker.from_url(url).capabilities.out_of_process:
        pytest.skip(f"{transport.name}: not out_of_process, a crash takes its queues along")
    made = task_url(transport, url)
    yield made
    await forget_results(made)


def runs(base: Path) -> Counter[str]:
    """``"<task> <job id>"`` lines of every worker process, counted."""
    counts: Counter[str] = Counter()
    for path in base.parent.glob(f"{base.name}.*"):
        counts.update(path.read_text().splitlines())
    return counts


def interrupted_in(path: Path) -> set[str]:
    """``"add <job id>"`` of the runs a process started and did not finish."""
    lines = path.read_text().splitlines()
    return {line.removeprefix("took ") for line in lines if line.startswith("took ")} - set(lines)


def worker(
    url: str, base: Path, agent: str = "Worker", *, signals: bool = True, **env: str
) -> Process:
    """``microhive run`` of the tasks (``signals=False``: Kafka has no signal bus, the
    agents get an in-process one)."""
    bus = url if signals else "memory://"
    return Process(
        "-m", "microhive", "run", f"{AGENTS}:{agent}", "--bus", bus, "--broker", url,
        "--grace-period", "1", env={"MH_TEST_RECORD": str(base), **env},
    )  # fmt: skip


def caller(url: str, size: int, pause: float, *extra: str) -> Process:
    """The submitting process (``"nested"``: a nested workflow too)."""
    return Process("-m", "tests.tasks.crash_agents", url, str(size), str(pause), *extra)


async def finished(
    broker: QueueBroker, expected: dict[str, int], base: Path, *workers: Process
) -> None:
    """Each job's result is the expected one; a job that does not finish in time fails the
    test with what every worker ran of it and printed (a lost step shows as a gap)."""
    for job_id, value in expected.items():
        try:
            assert await broker.job(job_id).result(timeout=120) == value
        except ResultTimeout:
            ran = sorted(line for line in runs(base) if job_id in line)
            printed = "\n".join(each.output for each in workers)
            raise AssertionError(
                f"{job_id} did not finish; its steps that ran: {ran}\nworkers:\n{printed}"
            ) from None


async def submitted(process: Process) -> list[str]:
    line = await asyncio.to_thread(process.wait_for_line, r"^submitted ", 30)
    return line.split()[1:]


async def test_the_caller_killed_right_after_submit(
    transport: Transport, where: str, tmp_path: Path
) -> None:
    base = tmp_path / "runs"
    size = 20
    who = caller(where, size, 0.0, "nested")
    try:
        chord_id, chain_id, nested_id = await submitted(who)
        who.popen.kill()  # SIGKILL: nothing of the caller is left to carry the workflows on
        who.wait(timeout=10)
    finally:
        who.kill()
    work = worker(where, base, signals=transport.signals)
    try:
        await ready(work)
        async with QueueBroker.from_url(where, queues=QUEUES) as broker:
            expected = {chord_id: size * (size - 1), chain_id: 128, nested_id: nested_result(size)}
            await finished(broker, expected, base, work)
        assert stop(work) == 0, work.output
    finally:
        work.kill()
    done = runs(base)
    assert done[f"xsum {chord_id}"] == 1
    assert done[f"xsum {nested_id}"] == 1
    flat = [line for line in done if line.startswith("add ") and nested_id not in line]
    assert len(flat) == size + 1


async def test_a_worker_killed_in_the_middle_of_a_group(
    transport: Transport, where: str, tmp_path: Path
) -> None:
    base = tmp_path / "runs"
    size = 200
    first, second = (worker(where, base, signals=transport.signals) for _ in range(2))
    who: Process | None = None
    killed = base.parent / f"{base.name}.{first.popen.pid}"
    try:
        await ready(first)
        await ready(second)
        who = caller(where, size, 0.05, "nested")
        chord_id, chain_id, nested_id = await submitted(who)

        def mid_group() -> bool:
            """20 members done, some running (not between two batches of its 8 at once)."""
            lines = killed.read_text().splitlines() if killed.exists() else []
            done = sum(1 for line in lines if line.startswith("add "))
            return done >= 20 and bool(interrupted_in(killed))

        await until(mid_group, 60, "the first worker to be in the middle of the group")
        first.popen.kill()
        first.wait(timeout=10)
        async with QueueBroker.from_url(where, queues=QUEUES) as broker:
            expected = {chord_id: size * (size - 1), chain_id: 128, nested_id: nested_result(size)}
            await finished(broker, expected, base, first, second)
        assert stop(second) == 0, second.output
    finally:
        first.kill()
        second.kill()
        if who is not None:
            who.kill()
    done = runs(base)
    members = {f"add {chord_id}.header.{i}" for i in range(size)}
    interrupted = interrupted_in(killed)
    assert interrupted & members, "the SIGKILL caught members in flight (they run elsewhere)"
    assert members <= set(done), "every member ran at least once"
    assert done[f"xsum {chord_id}"] == 1, "the chord's callback ran exactly once"
    nested = {f"mul {nested_id}.1.{i}" for i in range(size)}
    assert nested <= set(done), "every member chain of the nested workflow ran to its end"
    assert done[f"xsum {nested_id}"] == 1, "the nested chord's callback ran exactly once"
    again = sum(done[m] - 1 for m in members)
    print(
        f"{transport.name}: a worker SIGKILLed with {len(interrupted & members)} members in "
        f"flight; {again} of {size} members ran twice"
    )


@pytest.mark.parametrize("point", [CALLBACK_DUE, CALLBACK_SENT])
async def test_a_worker_killed_as_it_enqueues_the_chord_callback(
    transport: Transport, where: str, tmp_path: Path, point: str
) -> None:
    """The worker that finished the group dies after the join said it is complete, before
    the callback is sent (``callback-due``) or before it is marked sent (``callback-sent``):
    the redelivered last member enqueues it (again), and it still runs once. The callback
    runs in a third process, so the SIGKILL cannot also catch the callback running."""
    base, marker = tmp_path / "runs", tmp_path / "died"
    size = 20
    dying = {"MH_TEST_DIE_AT": point, "MH_TEST_DIE_MARKER": str(marker)}
    members = [worker(where, base, "Members", signals=transport.signals, **dying) for _ in range(2)]
    callbacks = worker(where, base, "Callbacks", signals=transport.signals)
    who: Process | None = None
    try:
        for each in [*members, callbacks]:
            await ready(each)
        who = caller(where, size, 0.01)
        chord_id, chain_id = await submitted(who)
        async with QueueBroker.from_url(where, queues=QUEUES) as broker:
            expected = {chord_id: size * (size - 1), chain_id: 128}
            await finished(broker, expected, base, *members, callbacks)

        def gone() -> list[Process]:
            return [each for each in members if each.popen.poll() is not None]

        # after the send the callback may be done before its sender comes to die
        dead = await until(gone, 30, "a worker to reach the point and SIGKILL itself")
        assert marker.exists()
        assert [each.popen.returncode for each in dead] == [-9], "exactly one was SIGKILLed"
        (alive,) = (each for each in members if each not in dead)
        assert stop(alive) == 0, alive.output
        assert stop(callbacks) == 0, callbacks.output
    finally:
        for each in [*members, callbacks]:
            each.kill()
        if who is not None:
            who.kill()
    done = runs(base)
    assert {f"add {chord_id}.header.{i}" for i in range(size)} <= set(done)
    assert done[f"xsum {chord_id}"] == 1, "the chord's callback ran exactly once"
