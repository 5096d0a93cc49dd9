"""Properties of nested workflows on memory://: a random tree of chains, groups and chords
computes what evaluating the same tree in plain Python computes (a failing task anywhere
fails the outer job with its error), and delivering every message of a finished workflow
again changes neither its result nor how often each task ran."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microhive import (
    ConfigurationError,
    MicroAgent,
    Namespace,
    PayloadError,
    Queue,
    QueueBroker,
    TaskFailed,
    chain,
    chord,
    group,
    private_catalog,
    task,
)
from microhive.tasks.canvas import Chain, Chord, Group, Node, Signature

from ..contract.task_agents import Sent

with private_catalog("nested-canvas"):
    OPS = Namespace(
        [
            Queue("n_add", providing_args=["x", "y"]),
            Queue("n_mul", providing_args=["x", "y"]),
            Queue("n_sum", providing_args=["value"]),
            Queue("n_boom", providing_args=["value"]),
        ],
        kind="queue",
    )


def total(value: Any) -> int:
    """Every integer in ``value`` (a number, or lists of them at any depth), added up: so
    any step can take any result, a group's list as well as a number."""
    if isinstance(value, list):
        return sum(total(item) for item in value)
    return int(value)


class Boom(Exception):
    pass


def compute(name: str, arguments: dict[str, Any]) -> Any:
    if name == "n_add":
        return total(arguments["x"]) + total(arguments["y"])
    if name == "n_mul":
        return total(arguments["x"]) * total(arguments["y"])
    if name == "n_sum":
        return total(arguments["value"])
    raise Boom(f"boom at {total(arguments['value'])}")


class Ops(MicroAgent):
    """Each run is counted by job id in ``settings["runs"]``."""

    def ran(self, name: str, **arguments: Any) -> Any:
        from microhive import current_job

        self.settings["runs"][current_job().id] += 1
        return compute(name, arguments)

    @task(OPS.n_add)
    async def add(self, x: Any, y: Any) -> int:
        return self.ran("n_add", x=x, y=y)  # type: ignore[no-any-return]

    @task(OPS.n_mul)
    async def mul(self, x: Any, y: Any) -> int:
        return self.ran("n_mul", x=x, y=y)  # type: ignore[no-any-return]

    @task(OPS.n_sum)
    async def sum(self, value: Any) -> int:
        return self.ran("n_sum", value=value)  # type: ignore[no-any-return]

    @task(OPS.n_boom)
    async def boom(self, value: Any) -> int:
        return self.ran("n_boom", value=value)  # type: ignore[no-any-return]


def evaluate(node: Node, value: Any = None) -> Any:
    """The workflow in plain Python: a value goes into the argument a task leaves out."""
    if isinstance(node, Signature):
        arguments = dict(node.arguments)
        missing = node.left_out()
        if missing:
            arguments[missing[0]] = value
        return compute(node.name, arguments)
    if isinstance(node, Group):
        return [evaluate(member, value) for member in node.members]
    if isinstance(node, Chord):
        return evaluate(node.callback, evaluate(node.header, value))
    for step in node.steps:
        value = evaluate(step, value)
    return value


SMALL = st.integers(-3, 3)


@st.composite
def tasks(draw: Any, receiving: bool, failing: bool) -> Signature[Any]:
    name = draw(st.sampled_from(["n_add", "n_mul"]))
    if not receiving:
        return OPS[name].s(x=draw(SMALL), y=draw(SMALL))
    choices = ["x", "y", "sum"] + (["boom"] if failing else [])
    which = draw(st.sampled_from(choices))
    if which == "sum":
        return OPS.n_sum.s()
    if which == "boom":
        return OPS.n_boom.s()
    return OPS[name].s(y=draw(SMALL)) if which == "x" else OPS[name].s(x=draw(SMALL))


@st.composite
def nodes(
    draw: Any, receiving: bool, depth: int, failing: bool = False, workflow: bool = False
) -> Node:
    """A node that runs with a value (``receiving``) or without one; ``workflow``: not a
    bare task."""
    kinds = ["chain", "group", "chord"] if workflow else ["task", "chain", "group", "chord"]
    kind = draw(st.sampled_from(kinds if depth else ["task"]))
    inner = depth - 1
    if kind == "task":
        return draw(tasks(receiving, failing))
    if kind == "chain":
        first = draw(nodes(receiving, inner, failing))
        rest = draw(st.lists(nodes(True, inner, failing), min_size=1, max_size=2))
        return chain(first, *rest)
    members = draw(st.lists(nodes(receiving, inner, failing), min_size=kind == "chord", max_size=3))
    if kind == "group":
        return group(members)
    return chord(group(members), draw(nodes(True, inner, failing)))


async def run_on_memory(workflow: Node, again: bool = False) -> tuple[Any, Counter[str]]:
    """The job's value (or its ``TaskFailed``) and the runs per job id; ``again``: then
    every message sent is sent once more, and the runs must not change."""
    sent = Sent()
    broker = QueueBroker.from_url("memory://nested", queues=OPS, middleware=[sent])
    runs: Counter[str] = Counter()
    async with Ops(None, broker, settings={"runs": runs}):
        job = await broker.submit(workflow)
        try:
            outcome: Any = await job.result(timeout=20)
        except TaskFailed as failed:
            outcome = failed
        await settled(broker)
        if again:
            before = Counter(runs)
            for envelope in list(sent.messages):
                await broker.send(envelope.name, envelope.payload, headers=envelope.headers)
            await settled(broker)
            assert runs == before, "a redelivered finished step ran again"
            try:
                assert await job.result(timeout=1) == outcome
            except TaskFailed as failed:
                assert str(failed) == str(outcome)
    await broker.close()
    return outcome, runs


async def settled(broker: QueueBroker) -> None:
    """Every queue empty, nothing in flight, three times in a row (a step enqueues the next
    one before its own message is acknowledged)."""
    quiet = 0
    while quiet < 3:
        await asyncio.sleep(0.01)
        lengths = [await broker.length(name) for name in ("n_add", "n_mul", "n_sum", "n_boom")]
        quiet = quiet + 1 if not any(lengths) else 0


def expected(workflow: Node) -> Any:
    try:
        return evaluate(workflow)
    except Boom as exc:
        return exc


def same(outcome: Any, wanted: Any) -> None:
    if isinstance(wanted, Boom):
        assert isinstance(outcome, TaskFailed), outcome
        assert outcome.remote_type == "Boom"
    else:
        assert outcome == wanted


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes(False, 3, workflow=True))
def test_a_nested_workflow_computes_what_python_computes(workflow: Node) -> None:
    outcome, runs = asyncio.run(run_on_memory(workflow))
    same(outcome, expected(workflow))
    assert all(count == 1 for count in runs.values()), runs


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes(False, 3, failing=True, workflow=True))
def test_a_failing_step_anywhere_fails_the_outer_job(workflow: Node) -> None:
    outcome, _ = asyncio.run(run_on_memory(workflow))
    same(outcome, expected(workflow))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes(False, 3, failing=True, workflow=True))
def test_every_message_delivered_again_changes_nothing(workflow: Node) -> None:
    outcome, _ = asyncio.run(run_on_memory(workflow, again=True))
    same(outcome, expected(workflow))


@given(nodes(True, 2))
def test_a_workflow_that_waits_for_a_value_is_refused_alone(workflow: Node) -> None:
    """Built to sit inside a chain, submitted alone: refused before anything is written."""

    async def go() -> None:
        broker = QueueBroker.from_url("memory://nested-refused", queues=OPS)
        with pytest.raises(PayloadError):
            await broker.submit(workflow)
        assert await broker.length("n_add") == await broker.length("n_mul") == 0
        await broker.close()

    if not _waits_for_nothing(workflow):
        asyncio.run(go())


def _waits_for_nothing(node: Node) -> bool:
    """Groups all of whose members are empty groups run with or without a value."""
    if isinstance(node, Group):
        return all(_waits_for_nothing(member) for member in node.members)
    if isinstance(node, Chain):
        return _waits_for_nothing(node.steps[0])
    if isinstance(node, Chord):
        return _waits_for_nothing(node.header)
    return False


def test_mixed_members_and_links_on_a_final_group_are_refused() -> None:
    with pytest.raises(PayloadError, match="all run without a value or all take one"):
        group(OPS.n_add.s(x=1, y=1), OPS.n_add.s(x=1))
    with pytest.raises(PayloadError, match=r"step 1 of a chain.*leaves none out"):
        chain(OPS.n_add.s(x=1, y=1), group(OPS.n_add.s(x=1, y=2)))
    workflow = chain(OPS.n_add.s(x=1, y=1), group(OPS.n_add.s(x=1)))

    async def go() -> None:
        broker = QueueBroker.from_url("memory://nested-links", queues=OPS)
        with pytest.raises(ConfigurationError, match="ends in a group"):
            await broker.submit(workflow, link=OPS.n_sum.s())
        assert await broker.length("n_add") == 0
        await broker.close()

    asyncio.run(go())
