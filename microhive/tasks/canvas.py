"""Signatures and workflows: what to run, built and checked at the sender.

A :class:`Signature` is a task queue with (some of) its keyword arguments. Workflows combine
them: :func:`chain` (each step gets the previous result), :func:`group` (run together, the
results in order) and :func:`chord` (a group, then one callback with the list of results).
Workflows nest (a group or a chord inside a chain, chains inside a group...): see
``nesting.py``. A task that receives a value — a chain step after the first, a chord
callback, a ``link`` or ``link_error`` callback, each member of a group that receives one —
leaves exactly one declared argument out, and the value fills it; anything else is refused
here, or at submit where only the position decides (a group's members may all wait for a
value, which a group submitted alone does not have), before a message is sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from ..declarations import TASK_OPTIONS, Queue
from ..errors import ConfigurationError, PayloadError

T = TypeVar("T")
P = ParamSpec("P")


def _undeclared(queue: Queue, arguments: Mapping[str, Any]) -> list[str]:
    if queue.schema is None:
        if queue.providing_args is None or arguments.keys() <= queue.required:
            return []
        return sorted(arguments.keys() - queue.required)
    return sorted(set(arguments) - set(queue.schema.model_fields))


@dataclass(frozen=True, slots=True, init=False)
class Signature(Generic[T]):
    """A task with (some of) its arguments: ``queues.add.s(x=1, y=2)``.

    Arguments the queue does not declare are refused at once; whether enough are given is
    checked where the signature is used (submit: all of them; a callback: all but one).
    """

    queue: Queue
    arguments: Mapping[str, Any]

    def __init__(self, queue: Queue, arguments: Mapping[str, Any]) -> None:
        if not isinstance(queue, Queue):
            raise ConfigurationError(f"a signature needs a Queue declaration, not {queue!r}")
        if queue.dead_of is not None:
            raise ConfigurationError(f"{queue.name!r} holds dead letters: it runs no tasks")
        if not TASK_OPTIONS.isdisjoint(arguments) and (
            reserved := sorted(TASK_OPTIONS & arguments.keys())
        ):
            raise PayloadError(
                f"task {queue.name!r}: {reserved} are submit's own options, not task arguments "
                "(give them to submit(...))"
            )
        if extra := _undeclared(queue, arguments):
            raise PayloadError(
                f"task {queue.name!r} takes {list(queue.arguments or ())}: undeclared {extra}"
            )
        object.__setattr__(self, "queue", queue)
        object.__setattr__(self, "arguments", dict(arguments))

    @property
    def name(self) -> str:
        return self.queue.name

    def left_out(self) -> list[str]:
        """The declared arguments this signature does not give (required ones only)."""
        if self.queue.arguments is None:
            raise PayloadError(
                f"task {self.name!r} does not declare its arguments, so the one that takes the "
                "previous result cannot be known: declare them on the queue (providing_args=[...] "
                "or a schema, in Python or in the JSON catalog)"
            )
        return sorted(self.queue.required - self.arguments.keys())

    def complete(self) -> dict[str, Any]:
        """The payload of a call with no value to fill in: every required argument given,
        checked against the queue's schema when it has one."""
        queue = self.queue
        declared = queue.arguments
        if (
            declared is not None
            and not queue.required <= self.arguments.keys()
            and (missing := self.left_out())
        ):
            raise PayloadError(f"task {self.name!r} takes {list(declared)}: missing {missing}")
        payload: dict[str, Any] = self.queue.make_payload(dict(self.arguments))
        return payload

    def slot(self, role: str) -> str:
        """The one argument a value fills (``role`` says which value, for the error)."""
        missing = self.left_out()
        if len(missing) != 1:
            given = sorted(self.arguments)
            raise PayloadError(
                f"task {self.name!r} as {role}: it must leave exactly one of its arguments "
                f"{list(self.queue.arguments or ())} out for the value, but leaves "
                f"{missing or 'none'} out (given {given})"
            )
        return missing[0]

    def __or__(self, other: Node) -> Chain:
        """``add.s(x=4, y=4) | mul.s(y=8)``: Celery's spelling of a chain."""
        return chain(self, other)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        return f"{self.name}.s({args})"


@dataclass(frozen=True, slots=True)
class Chain:
    """Steps run one after another; each gets the previous result (a group's: the list of
    its members' results). Its job is the last step's, and a failed step fails it."""

    steps: tuple[Signature[Any] | Group | Chord, ...]

    def __or__(self, other: Node) -> Chain:
        return chain(self, other)


@dataclass(frozen=True, slots=True)
class Group:
    """Members run in parallel; its result is the list of their results, in order. Inside a
    chain every member gets the previous result."""

    members: tuple[Node, ...]

    def __or__(self, other: Node) -> Chain:
        """``group(...) | xsum.s()``: a chord, as in Celery."""
        return chain(self, other)


@dataclass(frozen=True, slots=True)
class Chord:
    """A group, then ``callback`` with the list of the group's results."""

    header: Group
    callback: Node

    def __or__(self, other: Node) -> Chain:
        return chain(self, other)


Workflow = Chain | Group | Chord
Node = Signature[Any] | Chain | Group | Chord
"""Anything a workflow is built of: a signature or a workflow."""

_NODES = (Signature, Chain, Group, Chord)


def check(node: Node, receiving: bool, role: str) -> None:
    """Raise :class:`PayloadError` unless ``node`` can run with a value (``receiving``: its
    first tasks leave one argument out for it) or without one (they leave none out)."""
    if isinstance(node, Signature):
        if receiving:
            node.slot(role)
        else:
            node.complete()
    elif isinstance(node, Chain):
        check(node.steps[0], receiving, role)
    elif isinstance(node, Group):
        for member in node.members:
            check(member, receiving, role)
    else:
        check(node.header, receiving, role)


def _problem(node: Node, receiving: bool, role: str) -> PayloadError | None:
    try:
        check(node, receiving, role)
    except PayloadError as exc:
        return exc
    return None


def _begins(nodes: Iterable[Node], role: str) -> None:
    """Each node runs with a value or without one, and all of them alike (a group's members
    or a chain's first step: where the group sits decides which it is, not known yet)."""
    alone: Node | None = None
    taking: Node | None = None
    for node in nodes:
        without = _problem(node, False, role)
        if without is None:
            if _problem(node, True, role) is None:
                continue  # an empty group: either way
            alone = node
        elif _problem(node, True, role) is None:
            taking = node
        else:
            raise without
        if alone is not None and taking is not None:
            raise PayloadError(
                f"{role}s either all run without a value or all take one (a group inside a "
                f"chain: in the argument each leaves out), but {alone!r} leaves none out and "
                f"{taking!r} leaves one"
            )


def chain(*steps: Node) -> Chain:
    """``chain(add.s(x=4, y=4), mul.s(y=8))``: ``mul`` gets ``add``'s result as ``x``.

    Steps may be groups and chords: ``chain(a, group(b, c), d)`` gives ``a``'s result to
    ``b`` and ``c`` and the list of theirs to ``d`` (a chord, as in Celery)."""
    flat: list[Signature[Any] | Group | Chord] = []
    for step in steps:
        if isinstance(step, Chain):
            flat += step.steps
        elif isinstance(step, Signature | Group | Chord):
            flat.append(step)
        else:
            raise ConfigurationError(
                "a chain's steps are signatures (queue.s(...)) or workflows, not "
                f"{type(step).__name__}"
            )
    if not flat:
        raise ConfigurationError("a chain needs at least one step")
    for index, step in enumerate(flat[1:], start=1):
        check(step, True, f"step {index} of a chain")
    _begins(flat[:1], "a chain's first step")
    return Chain(tuple(flat))


def group(*members: Node | Iterable[Node]) -> Group:
    """``group(add.s(x=i, y=i) for i in range(10))`` or ``group(a.s(), chain(b, c))``.

    Members either all run as they are, or all leave one argument out: then the group sits
    in a chain (or is a chord's header there) and each member gets the previous result."""
    found: list[Any] = []
    for item in members:
        if isinstance(item, _NODES):
            found.append(item)
        else:
            found += list(item)
    for member in found:
        if not isinstance(member, _NODES):
            raise ConfigurationError(
                "a group's members are signatures (queue.s(...)) or workflows, not "
                f"{type(member).__name__}"
            )
    _begins(found, "a group's member")
    return Group(tuple(found))


def chord(header: Group | Iterable[Node], callback: Node) -> Chord:
    """``chord(group(...), xsum.s())``: ``xsum`` gets the list of results, once."""
    members = header if isinstance(header, Group) else group(header)
    if not members.members:
        raise ConfigurationError("a chord needs at least one member in its group")
    if not isinstance(callback, _NODES):
        raise ConfigurationError("a chord's callback is a signature (queue.s(...)) or a workflow")
    check(callback, True, "a chord's callback")
    return Chord(members, callback)


def callbacks(given: Signature[Any] | Iterable[Signature[Any]] | None, role: str) -> list[Any]:
    """``link=`` / ``link_error=``: one signature or several, each leaving one argument out."""
    if given is None:
        return []
    found = [given] if isinstance(given, Signature) else list(given)
    for item in found:
        if not isinstance(item, Signature):
            raise ConfigurationError(f"{role} takes signatures (queue.s(...)), not {item!r}")
        item.slot(role)
    return found


def signature(
    method: Callable[Concatenate[Any, P], Awaitable[T]], *args: P.args, **arguments: P.kwargs
) -> Signature[T]:
    """A typed signature of a ``@task`` method: ``signature(Math.add, x=1, y=1)`` is a
    ``Signature[int]``, so ``await broker.submit(...)`` is a ``Job[int]`` and the type
    checker checks the arguments against the method."""
    from ..agent.decorators import specs_of
    from ..agent.specs import ConsumerSpec

    if args:
        raise PayloadError("task arguments are keywords: signature(Task.method, name=value)")
    for spec in specs_of(method):
        if isinstance(spec, ConsumerSpec) and spec.task is not None:
            return Signature(spec.queue, arguments)
    name = getattr(method, "__qualname__", repr(method))
    raise ConfigurationError(f"{name} is not a @task method")
