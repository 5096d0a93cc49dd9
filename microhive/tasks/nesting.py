"""Nested workflows: a canvas tree turned into the wire's steps, with deterministic job ids.

A flat workflow (a chain of signatures, a group of signatures, a chord of those) keeps the
submit path of ``submit.py``. Anything else — a group or chord inside a chain, chains or
groups inside a group, a chord inside a chord — is compiled here into one *fragment*: the
list of steps of a chain, where a step is a task or a group (a :class:`~.wire.Step` with
``members``, each member a fragment of its own). The workers carry it on like a flat chain
(``continuation.py``): a group step is launched by the worker that ran the step before it,
and the group's completion carries on with what follows it.

Job ids (each unique in the tree, derived from the submitted job id ``J``):

- a chain's steps are ``J.0``, ``J.1``, ... and its last is ``J``; when the last is a group
  (whose members are ``J.<i>``) the others are ``J.c0``, ``J.c1``, ...;
- a group's members are ``<group>.<i>``;
- a chord whose callback is one task or one group is ``J.header`` then ``J``; a chord whose
  callback is a chain (or a chord) is a chain of its header and the callback's steps.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from .canvas import Chain, Chord, Group, Node, Signature, check
from .store import JobRecord
from .wire import Step

if TYPE_CHECKING:
    from ..broker import QueueBroker
    from .store import ResultStore


def is_nested(target: Node) -> bool:
    """Whether ``target`` needs this module (anything but the flat forms of ``submit.py``)."""
    if isinstance(target, Chain):
        return not all(isinstance(step, Signature) for step in target.steps)
    if isinstance(target, Group):
        return not all(isinstance(member, Signature) for member in target.members)
    if isinstance(target, Chord):
        return is_nested(target.header) or not isinstance(target.callback, Signature)
    return False


def units(node: Node) -> list[Node]:
    """The steps of ``node`` seen as a chain: chains flattened, and a chord whose callback
    is a chain or a chord becomes its header followed by the callback's steps."""
    if isinstance(node, Chain):
        return [unit for step in node.steps for unit in units(step)]
    if isinstance(node, Chord) and not isinstance(node.callback, Signature | Group):
        return [node.header, *units(node.callback)]
    return [node]


def fragment(node: Node, job: str, receiving: bool) -> list[Step]:
    """``node`` as the steps of a chain whose last job is ``job``; ``receiving``: its first
    tasks get a value in the argument they leave out (else their arguments are complete)."""
    if isinstance(node, Signature):
        if receiving:
            fill = node.slot("a step")
            return [Step(queue=node.name, job=job, args=dict(node.arguments), fill=fill)]
        return [Step(queue=node.name, job=job, args=node.complete())]
    if isinstance(node, Group):
        members = [
            fragment(member, f"{job}.{index}", receiving)
            for index, member in enumerate(node.members)
        ]
        return [Step(queue="", job=job, members=members)]
    steps = units(node)
    if len(steps) == 1 and isinstance(node, Chord):
        return fragment(node.header, f"{job}.header", receiving) + fragment(
            node.callback, job, True
        )
    *head, last = steps
    tail = fragment(last, job, receiving if not head else True)
    prefix = f"{job}.c" if tail[-1].members is not None else f"{job}."
    made: list[Step] = []
    for index, step in enumerate(head):
        made += fragment(step, f"{prefix}{index}", receiving if index == 0 else True)
    return made + tail


def member_ids(step: Step) -> list[str]:
    return [f"{step.job}.{index}" for index in range(len(step.members or ()))]


def group_record(step: Step, now: float) -> JobRecord:
    """A group step's pending record, listing its members (a revoke reaches them)."""
    return JobRecord(id=step.job, queue="", created_at=now, members=tuple(member_ids(step)))


def pending_records(steps: list[Step], now: float) -> list[JobRecord]:
    """The records written before a fragment's first step is sent, so that a revoke finds
    them: its last job's (a group's lists its members; a chain's names its first step) and,
    when a group comes just before that last step (a chord), the group's too, which the last
    job's record names, so that revoking the job reaches the group as it would a chord's."""
    last = steps[-1]
    if last.members is not None:
        return [group_record(last, now)]
    meta = {"first": steps[0].job} if len(steps) > 1 else {}
    records = []
    if len(steps) > 1 and steps[-2].members is not None:
        meta["group"] = steps[-2].job
        records.append(group_record(steps[-2], now))
    return [JobRecord(id=last.job, queue=last.queue, created_at=now, meta=meta), *records]


async def submit_nested(
    broker: QueueBroker,
    store: ResultStore,
    target: Node,
    job: str,
    *,
    delay: float | None,
    link: list[Step],
    link_error: list[Step],
    sender: str,
) -> None:
    """Check ``target`` whole, write its job's record, launch its first step (at once, or
    after ``delay``): the workers carry on from there."""
    check(target, False, "a workflow's first step")
    steps = fragment(target, job, False)
    last = steps[-1]
    if last.members is not None and (link or link_error):
        raise ConfigurationError(
            "link= / link_error= on a workflow that ends in a group: end it with a callback "
            "(a chord) instead"
        )
    last.link, last.link_error = link, link_error
    first, *others = pending_records(steps, time.time())
    if not await store.create(first, awaited=True):
        return  # a submit with this job_id was made already
    for record in others:
        await store.create(record)
    from .continuation import Continuer  # continuation imports submit, which imports us

    await Continuer(broker, store, sender, delay=delay).launch(steps[0], None, steps[1:], None)
