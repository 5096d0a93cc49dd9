"""The calc example's consumers against a model, for any tasks hypothesis can think of.

Whatever the operands (numbers, zeros, strings, null, booleans, lists) and operations, each
task published to the topic exchange reaches its operation's consumer and the audit queue;
it ends as exactly one correct result or exactly one dead letter with the model's reason.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from examples.calc.agents import CATALOG, AddAgent, AuditAgent, DivAgent, MulAgent, SubAgent
from microhive.testing import run_agents

from .test_calc import OPERATIONS, CalcLog, Task

OPERAND = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 0.0, -0.0, "7", "2.5", "1_0", " 3 ", "nan", "inf", "seven", ""]),
    st.text(max_size=4),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
TASKS = st.lists(st.tuples(st.sampled_from(sorted(OPERATIONS)), OPERAND, OPERAND), max_size=12)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tasks=TASKS, strings=st.booleans())
def test_every_task_ends_as_one_right_result_or_one_dead_letter(
    tasks: list[tuple[str, Any, Any]], strings: bool, tmp_path: Path
) -> None:
    # a file of its own per example (hypothesis seeds `random`, so not from random ids)
    asyncio.run(_check(tasks, strings, CalcLog(tmp_path / f"calc-{uuid.uuid4().hex}.log")))


async def _check(tasks: list[tuple[str, Any, Any]], strings: bool, log: CalcLog) -> None:
    agents = (AuditAgent, AddAgent, SubAgent, MulAgent, DivAgent)
    options = {"log": str(log.path), "strings": strings}
    async with run_agents(
        *agents, catalog=CATALOG, settings={a.__name__: options for a in agents}
    ) as hive:
        sent: dict[str, Task] = {}
        for n, (op, a, b) in enumerate(tasks, 1):
            payload = {"n": n, "a": a, "b": b}
            message_id = await hive.broker.publish("calc", payload, routing_key=f"calc.{op}")
            sent[message_id] = Task(message_id, n, op, a, b)
        await hive.wait_for(lambda: log.settled(set(sent)), 30)
        dead: dict[str, list[str]] = {}
        for op in OPERATIONS:
            for letter in await hive.broker.queue(op).dead.list(1000):
                assert letter.envelope is not None
                dead.setdefault(letter.envelope.id, []).append(f"{op}: {letter.reason}")

    results, audit = log.by_id("result"), log.by_id("audit")
    assert set(audit) == set(sent) and all(len(lines) == 1 for lines in audit.values())
    for task in sent.values():
        reason = task.failure(strings=strings)
        if reason is None:
            assert results.get(task.id) == [task.result(strings=strings)], task
            assert task.id not in dead, task
        else:
            assert task.id not in results, task
            assert dead.get(task.id) == [f"{task.op}: Reject: {reason}"], task
    assert set(dead) <= set(sent)
