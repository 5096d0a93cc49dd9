"""The calc example (seed 002's exercise) end to end, as its README runs it.

``python -m examples.calc`` runs as a real process on ``memory://`` and on RabbitMQ; the test
reads its log file and recomputes every result, finds each failing task (division by zero,
bad operand) rejected, dead-lettered with its reason exactly once and absent from the results,
and the audit queue's record of every task. On RabbitMQ the ``microhive dlq`` commands then
list, show, requeue (back to a fixed consumer, and ``--to`` another queue) and purge them.
"""

from __future__ import annotations

import json
import math
import operator
import re
import signal
from collections import Counter
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microhive import QueueBroker
from microhive.envelope import new_id
from microhive.testing import eventually

from ..amqp import server as amqp_server
from ..cli.helpers import Process, run

OPERATIONS: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "add": ("+", operator.add),
    "sub": ("-", operator.sub),
    "mul": ("*", operator.mul),
    "div": ("/", operator.truediv),
}
LINE = re.compile(r"^\S+ \S+ (?P<kind>\w+) +n=(?P<n>\S+) id=(?P<id>\S+) (?P<text>.*)$")
TASK = re.compile(r"^calc\.(?P<op>\w+) a=(?P<a>.*) b=(?P<b>.*)$")
DEAD = re.compile(r"^(?P<queue>\w+): (?P<reason>.*) \(attempt (?P<attempt>\d+)\)$")
COUNT = 60
SEED = "7"
WAIT = 60.0


@dataclass(frozen=True)
class Task:
    id: str
    n: int
    op: str
    a: Any
    b: Any

    def failure(self, *, strings: bool = False) -> str | None:
        """Why a correct consumer must reject this task (None: it has a result)."""
        for name, value in (("a", self.a), ("b", self.b)):
            if _number(value, strings) is None:
                return f"bad operand: {name}={json.dumps(value)} is not a number"
        if self.op == "div" and _number(self.b, strings) == 0:
            return "division by zero"
        return None

    def result(self, *, strings: bool = False) -> str:
        """The result line's text, computed here independently of the example."""
        symbol, function = OPERATIONS[self.op]
        a, b = _number(self.a, strings), _number(self.b, strings)
        return f"{a} {symbol} {b} = {function(a, b)!r}"


def _number(value: Any, strings: bool) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if strings and isinstance(value, str):
        for parse in (int, float):
            try:
                number = parse(value)
            except ValueError:
                continue
            return number if math.isfinite(number) else None
    return None


class CalcLog:
    """The example's log file, parsed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self, kind: str) -> list[re.Match[str]]:
        if not self.path.exists():
            return []
        found = []
        for line in self.path.read_text().splitlines():
            match = LINE.match(line)
            assert match is not None, f"unexpected line in the log: {line!r}"
            if match["kind"] == kind:
                found.append(match)
        return found

    def tasks(self) -> dict[str, Task]:
        tasks = {}
        for line in self.lines("sent"):
            task = TASK.match(line["text"])
            assert task is not None, line.string
            tasks[line["id"]] = Task(
                line["id"], int(line["n"]), task["op"], json.loads(task["a"]), json.loads(task["b"])
            )
        return tasks

    def by_id(self, kind: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for line in self.lines(kind):
            found.setdefault(line["id"], []).append(line["text"])
        return found

    def settled(self, ids: set[str]) -> bool:
        """Every task has its result or its rejection, and its audit line."""
        outcomes = {*self.by_id("result"), *self.by_id("rejected")}
        return ids <= outcomes and ids <= set(self.by_id("audit"))


def example(url: str, log: Path, *extra: str) -> Process:
    return Process("-m", "examples.calc", "--url", url, "--log", str(log), *extra)


async def until(process: Process, condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` (read from the log file); fail with the process's output."""
    try:
        await eventually(condition, WAIT, interval=0.1)
    except TimeoutError:
        raise AssertionError(f"not within {WAIT} s; the example said:\n{process.output}") from None


def stop(process: Process) -> None:
    process.popen.send_signal(signal.SIGTERM)
    assert process.wait(WAIT) == 0, process.output


async def run_once(url: str, log: Path) -> dict[str, Task]:
    """The example publishes COUNT tasks; once every one has its outcome it is stopped
    (SIGTERM), so the dead-letter watcher's last look is in the log too."""
    calc = CalcLog(log)
    process = example(url, log, "--count", str(COUNT), "--batch", "20", "--seed", SEED)
    try:
        await until(process, lambda: len(calc.tasks()) == COUNT)
        tasks = calc.tasks()
        await until(process, lambda: calc.settled(set(tasks)))
        stop(process)
    finally:
        process.kill()
    return tasks


def check_log(log: Path, tasks: dict[str, Task]) -> dict[str, str]:
    """Every result right, every failure rejected and dead exactly once, every task audited;
    returns the failing tasks' ids and reasons."""
    calc = CalcLog(log)
    assert sorted(t.n for t in tasks.values()) == list(range(1, COUNT + 1))
    results, rejected, dead = calc.by_id("result"), calc.by_id("rejected"), calc.by_id("dead")
    audit = calc.by_id("audit")
    failing: dict[str, str] = {}
    for task in tasks.values():
        assert audit.get(task.id) == [
            f"calc.{task.op} a={json.dumps(task.a)} b={json.dumps(task.b)}"
        ]
        reason = task.failure()
        if reason is None:
            assert results.get(task.id) == [task.result()], task
            assert task.id not in rejected and task.id not in dead, task
            continue
        failing[task.id] = reason
        assert task.id not in results, task
        assert rejected.get(task.id) == [f"calc.{task.op}: {reason}"], task
        assert dead.get(task.id) == [f"{task.op}: Reject: {reason} (attempt 1)"], task
    assert set(audit) == set(tasks), "audit saw a task nobody sent"
    kinds = Counter("zero" if r == "division by zero" else "operand" for r in failing.values())
    assert kinds["zero"] >= 1 and kinds["operand"] >= 1, "the seed must give both failures"
    return failing


async def test_calc_on_memory_in_one_process(tmp_path: Path) -> None:
    log = tmp_path / "calc.log"
    tasks = await run_once("memory://", log)
    check_log(log, tasks)


def dlq(url: str, *args: str) -> str:
    """``python -m microhive dlq ...`` as a real process; its output."""
    done = run("-m", "microhive", "dlq", *args, "--transport", url, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def test_calc_on_rabbitmq_and_its_dead_letters_from_the_shell(tmp_path: Path) -> None:
    amqp_server.require_amqp()
    url = amqp_server.contract_url(f"calc{new_id()[:8]}")
    log = tmp_path / "calc.log"
    tasks = await run_once(url, log)
    failing = check_log(log, tasks)
    await check_dead_letters(url, tasks, failing)
    list_and_show(url, tasks, failing)
    zero = await requeue_to_review(url, tasks, failing)
    requeued, fixed = await requeue_to_the_fixed_consumer(url, tmp_path, tasks, failing)
    left = (set(failing) - zero - requeued) | (requeued - fixed)
    await check_dead_letters(url, tasks, {t: failing[t] for t in left}, requeued=requeued)
    for op in OPERATIONS:  # purge: nothing is left
        count = sum(1 for t in left if tasks[t].op == op)
        assert dlq(url, "purge", op).strip() == f"purged {count} dead letter(s) of {op}"
        assert dlq(url, "list", op, "--json") == ""


async def check_dead_letters(
    url: str,
    tasks: dict[str, Task],
    failing: dict[str, str],
    requeued: AbstractSet[str] = frozenset(),
) -> None:
    """The dead letters stay on RabbitMQ after the example stopped: each failure once, with
    its reason; a requeued one says so in its ``x-requeued`` header."""
    async with QueueBroker.from_url(url) as broker:
        for op in OPERATIONS:
            letters = await broker.queue(op).dead.list(1000)
            found: Counter[tuple[str, str]] = Counter()
            for letter in letters:
                assert letter.envelope is not None
                found[(letter.envelope.id, letter.reason)] += 1
                if letter.envelope.id in requeued:
                    assert letter.envelope.headers.get("x-requeued"), letter
            expected = Counter(
                (tid, f"Reject: {reason}") for tid, reason in failing.items() if tasks[tid].op == op
            )
            assert found == expected


def list_and_show(url: str, tasks: dict[str, Task], failing: dict[str, str]) -> None:
    listed = [json.loads(line) for line in dlq(url, "list", "div", "--json").splitlines()]
    div_failing = {tid: r for tid, r in failing.items() if tasks[tid].op == "div"}
    assert {d["id"]: d["reason"] for d in listed} == {
        tid: f"Reject: {reason}" for tid, reason in div_failing.items()
    }
    first = listed[0]["id"]
    shown = dlq(url, "show", "div", first)
    assert f"id: {first}" in shown and f"reason: Reject: {div_failing[first]}" in shown
    assert f'"n": {tasks[first].n}' in shown


async def requeue_to_review(url: str, tasks: dict[str, Task], failing: dict[str, str]) -> set[str]:
    """Divisions by zero go to another queue, for a person to look at (``--to``)."""
    zero = {tid for tid, reason in failing.items() if reason == "division by zero"}
    moved = dlq(url, "requeue", "div", "--reason", "division by zero", "--to", "review")
    assert moved.strip() == f"requeued {len(zero)} dead letter(s) of div to review"
    async with QueueBroker.from_url(url) as broker:
        assert await broker.queue("review").length() == len(zero)
    return zero


async def requeue_to_the_fixed_consumer(
    url: str, tmp_path: Path, tasks: dict[str, Task], failing: dict[str, str]
) -> tuple[set[str], set[str]]:
    """Bad operands go back to their own queues, where the fixed consumer (it takes numbers
    sent as strings) now computes some of them; the others are dead again, once each."""
    requeued: set[str] = set()
    for op in OPERATIONS:
        ids = {t for t, r in failing.items() if tasks[t].op == op and r.startswith("bad operand")}
        out = dlq(url, "requeue", op, "--reason", "bad operand")
        assert out.strip() == f"requeued {len(ids)} dead letter(s) of {op}"
        requeued |= ids
    again = {t for t in requeued if tasks[t].failure(strings=True)}
    fixed = requeued - again
    assert fixed and again, "the seed must send numbers in strings, and other bad operands"
    calc = CalcLog(tmp_path / "second.log")
    process = example(url, calc.path, "--count", "0", "--accept-strings")
    try:
        await until(process, lambda: requeued <= {*calc.by_id("result"), *calc.by_id("rejected")})
        await until(process, lambda: again <= set(calc.by_id("dead")))
        stop(process)
    finally:
        process.kill()
    results, dead = calc.by_id("result"), calc.by_id("dead")
    for tid in fixed:
        assert results[tid] == [tasks[tid].result(strings=True)]
        assert tid not in dead
    for tid in again:
        task = tasks[tid]
        assert tid not in results
        assert dead[tid] == [f"{task.op}: Reject: {task.failure(strings=True)} (attempt 1)"]
    return requeued, fixed
