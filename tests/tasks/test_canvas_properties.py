"""Properties of building workflows: which signatures and workflows are accepted, which
argument a value fills, that the wire keeps a continuation whole, and that a chain run on
memory:// computes what folding its steps in Python computes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microhive import (
    MicroAgent,
    Namespace,
    PayloadError,
    Queue,
    QueueBroker,
    chain,
    chord,
    group,
    private_catalog,
    task,
)
from microhive.tasks.canvas import Signature
from microhive.tasks.submit import step_of
from microhive.tasks.wire import Continuation, GroupInfo, Step, headers_for

NAMES = st.sampled_from(["a", "b", "c", "d", "e"])
ARGUMENT_SETS = st.lists(NAMES, unique=True, max_size=4)


def queue_with(args: list[str]) -> Queue:
    with private_catalog():
        return Queue("q", providing_args=args)


@given(ARGUMENT_SETS, st.lists(st.sampled_from(["a", "b", "c", "d", "e", "z"]), unique=True))
def test_a_signature_takes_only_declared_arguments(declared: list[str], given_: list[str]) -> None:
    queue = queue_with(declared)
    arguments = dict.fromkeys(given_, 1)
    if set(given_) <= set(declared):
        signature = Signature(queue, arguments)
        assert signature.left_out() == sorted(set(declared) - set(given_))
    else:
        with pytest.raises(PayloadError, match="undeclared"):
            Signature(queue, arguments)


@given(ARGUMENT_SETS, st.data())
def test_a_value_fills_the_one_argument_left_out(declared: list[str], data: Any) -> None:
    queue = queue_with(declared)
    given_ = data.draw(
        st.lists(st.sampled_from(declared), unique=True) if declared else st.just([])
    )
    signature = Signature(queue, dict.fromkeys(given_, 0))
    missing = set(declared) - set(given_)
    if len(missing) == 1:
        assert signature.slot("a callback") == missing.pop()
    else:
        with pytest.raises(PayloadError, match="exactly one"):
            signature.slot("a callback")


@given(st.lists(st.tuples(ARGUMENT_SETS, st.integers(0, 4)), min_size=1, max_size=5))
def test_a_chain_is_accepted_exactly_when_every_step_fits(shape: list[Any]) -> None:
    steps = []
    for declared, drop in shape:
        queue = queue_with(declared)
        given_ = declared[: max(0, len(declared) - drop)]
        steps.append(Signature(queue, dict.fromkeys(given_, 0)))
    # the first step may leave one out too: the chain then takes a value itself (inside a
    # group in a chain); submitting it alone is refused then
    fits = len(steps[0].left_out()) <= 1 and all(len(s.left_out()) == 1 for s in steps[1:])
    if fits:
        assert chain(*steps).steps == tuple(steps)
    else:
        with pytest.raises(PayloadError):
            chain(*steps)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
STEPS = st.builds(
    Step,
    queue=st.text(min_size=1, max_size=5),
    job=st.text(min_size=1, max_size=8),
    args=st.dictionaries(st.text(max_size=3), JSON, max_size=3),
    fill=st.none() | st.text(min_size=1, max_size=3),
)


# a group step (nested workflows): members that are chains of steps
NODES = STEPS | st.builds(
    Step,
    queue=st.just(""),
    job=st.text(min_size=1, max_size=8),
    members=st.lists(st.lists(STEPS, min_size=1, max_size=2), max_size=2),
)
GROUPS = st.recursive(
    st.builds(GroupInfo, id=st.text(min_size=1), size=st.integers(1, 99)),
    lambda outer: st.builds(
        GroupInfo,
        id=st.text(min_size=1),
        size=st.integers(0, 99),
        then=st.none() | NODES,
        chain=st.lists(NODES, max_size=2),
        group=outer,
    ),
    max_leaves=3,
)


@given(
    st.lists(NODES, max_size=3),
    st.none() | GROUPS,
    st.lists(STEPS, max_size=2),
    st.lists(STEPS, max_size=2),
)
def test_the_wire_keeps_a_continuation_whole(
    rest: list[Step], info: GroupInfo | None, link: list[Step], errors: list[Step]
) -> None:
    headers = headers_for("job", chain=rest, group=info, link=link, link_error=errors)
    assert all(isinstance(value, str) for value in headers.values())
    decoded = Continuation.of(headers)
    assert decoded == Continuation(chain=rest, group=info, link=link, link_error=errors)


with private_catalog("canvas-properties"):
    OPS = Namespace(
        [Queue("p_add", providing_args=["x", "y"]), Queue("p_mul", providing_args=["x", "y"])],
        kind="queue",
    )


class Arithmetic(MicroAgent):
    @task(OPS.p_add)
    async def add(self, x: int, y: int) -> int:
        return x + y

    @task(OPS.p_mul)
    async def mul(self, x: int, y: int) -> int:
        return x * y


async def run_on_memory(workflow: Any) -> Any:
    broker = QueueBroker.from_url("memory://properties", queues=OPS)
    async with Arithmetic(None, broker):
        job = await broker.submit(workflow)
        value = await job.result(timeout=10)
    await broker.close()
    return value


OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["p_add", "p_mul"]), st.integers(-5, 5), st.booleans()),
    min_size=1,
    max_size=6,
)


@settings(max_examples=25, deadline=None)
@given(st.integers(-5, 5), OPERATIONS)
def test_a_chain_computes_the_fold_of_its_steps(start: int, operations: list[Any]) -> None:
    steps = [OPS.p_add.s(x=start, y=0)]
    expected = start
    for name, operand, fill_x in operations:
        # the previous result goes into whichever argument the step leaves out
        steps.append(OPS[name].s(y=operand) if fill_x else OPS[name].s(x=operand))
        expected = expected + operand if name == "p_add" else expected * operand
    assert asyncio.run(run_on_memory(chain(*steps))) == expected


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(-9, 9), st.integers(-9, 9)), max_size=12))
def test_a_group_keeps_the_order_of_its_members(pairs: list[tuple[int, int]]) -> None:
    members = [OPS.p_add.s(x=x, y=y) for x, y in pairs]
    assert asyncio.run(run_on_memory(group(members))) == [x + y for x, y in pairs]


def test_a_callback_leaving_two_arguments_out_is_refused() -> None:
    with pytest.raises(PayloadError, match="exactly one"):
        step_of(OPS.p_add.s(), "j", "a chord's callback")
    with pytest.raises(PayloadError, match="exactly one"):
        chord(group([OPS.p_add.s(x=1, y=1)]), OPS.p_add.s())
