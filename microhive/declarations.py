"""Signals and queues are declared once, as plain immutable values.

A :class:`Namespace` gathers declarations for attribute access (``signals.user_enter``).
Each declaration is also recorded in the active registry (microhive/registry.py), so a name
declared anywhere in a program resolves on any bus or broker of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import ConfigurationError, PayloadError, UnknownNameError
from .exchanges import (
    EXCHANGE_TYPES,
    Binding,
    BindingLike,
    Exchange,
    binding_of,
    check_routing_key,
)
from .names import NAME_PATTERN, SHADOWING_NAMES, check_name, schema_errors
from .registry import Registry, active_registry
from .signals import RESERVED_ARGUMENTS, Signal

if TYPE_CHECKING:
    from .tasks.canvas import Signature

__all__ = [
    "EXCHANGE_TYPES",
    "NAME_PATTERN",
    "PAYLOAD_KINDS",
    "RESERVED_ARGUMENTS",
    "SHADOWING_NAMES",
    "TASK_OPTIONS",
    "Binding",
    "BindingLike",
    "Exchange",
    "Namespace",
    "Queue",
    "Signal",
    "check_name",
    "check_routing_key",
    "lookup",
    "queues_of",
    "signals_of",
    "undeclared_queue",
]

TASK_OPTIONS = frozenset({"delay", "at", "job_id", "link", "link_error"})
"""``submit``'s own keyword options: no task argument may be called so."""


PAYLOAD_KINDS = ("json", "text", "bytes")
"""What a queue's messages carry when a producer without microhive sent them."""


@dataclass(frozen=True, slots=True)
class Queue:
    """A durable work queue; consumers of one queue compete for its messages.

    ``bindings`` subscribe the queue to exchanges (on transports with the ``routing``
    capability): ``Queue("sms", bindings=[(notifications, "app.sms.#")])``. ``payload`` says
    what a body from a producer without microhive is: JSON (the default), UTF-8 ``"text"``
    (the RabbitMQ tutorial's ``"Hello World"``) or raw ``"bytes"``. ``address`` names the
    engine object the queue lives on verbatim — an existing Kafka topic, Redis stream, NATS
    subject or RabbitMQ queue — instead of microhive's own naming.
    """

    name: str
    schema: type[BaseModel] | None = field(default=None, compare=False)
    bindings: tuple[Binding, ...] = ()
    payload: str = "json"
    address: str | None = None
    dead_of: str | None = None
    """Set on ``queue.dead``: the queue whose dead letters this one consumes."""
    providing_args: tuple[str, ...] | None = None
    """A task queue's argument names (``None``: not declared; a schema declares them too)."""
    _required: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __init__(
        self,
        name: str,
        schema: type[BaseModel] | None = None,
        *,
        bindings: Iterable[BindingLike] = (),
        payload: str = "json",
        address: str | None = None,
        providing_args: Iterable[str] | None = None,
    ) -> None:
        check_name("queue", name)
        args = _task_arguments(name, schema, providing_args)
        if isinstance(bindings, Binding | Exchange | str):
            raise ConfigurationError(f"queue {name!r}: bindings must be a list of bindings")
        if payload not in PAYLOAD_KINDS:
            kinds = ", ".join(PAYLOAD_KINDS)
            raise ConfigurationError(
                f"queue {name!r}: payload must be one of {kinds}, not {payload!r}"
            )
        if schema is not None and payload != "json":
            raise ConfigurationError(f"queue {name!r}: a schema needs JSON payloads")
        if address is not None and (
            not isinstance(address, str)
            or not address
            or len(address) > 255
            or address.strip() != address
        ):
            raise ConfigurationError(
                f"queue {name!r}: address must be the engine object's name (1 to 255 characters)"
            )
        found: list[Binding] = []
        for item in bindings:
            binding = binding_of(name, item)
            if binding not in found:
                found.append(binding)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "schema", schema)
        object.__setattr__(self, "bindings", tuple(found))
        object.__setattr__(self, "payload", payload)
        object.__setattr__(self, "address", address)
        object.__setattr__(self, "dead_of", None)
        object.__setattr__(self, "providing_args", args)
        object.__setattr__(self, "_required", _required(schema, args))
        active_registry().add("queue", self, self.shape())

    def shape(self) -> tuple[Any, ...]:
        """What two declarations of one name must agree on."""
        return (self.schema, self.bindings, self.payload, self.address, self.providing_args)

    @property
    def arguments(self) -> tuple[str, ...] | None:
        """The task arguments this queue declares (``providing_args`` or the schema's
        fields), or ``None`` when it declares none: then only the worker checks them."""
        if self.schema is not None:
            return tuple(self.schema.model_fields)
        return self.providing_args

    @property
    def required(self) -> frozenset[str]:
        """The declared arguments a complete call must give (all of ``providing_args``; a
        schema's fields without a default)."""
        return self._required

    def s(self, **arguments: Any) -> Signature[Any]:
        """A signature: this task with (some of) its arguments, for ``submit`` and workflows."""
        if not _SIGNATURE:
            from .tasks.canvas import Signature  # the task layer builds on this module

            _SIGNATURE.append(Signature)
        return _SIGNATURE[0](self, arguments)

    @property
    def dead(self) -> Queue:
        """This queue's dead letters, as a queue to consume: ``@consumer(queues.calc.dead)``
        hands the handler each :class:`~microhive.broker.DeadLetter`, removes it once the
        handler returned, and keeps it (tried again later) when the handler fails."""
        dead = object.__new__(Queue)
        object.__setattr__(dead, "name", f"{self.name}.dead")
        object.__setattr__(dead, "schema", None)
        object.__setattr__(dead, "bindings", ())
        object.__setattr__(dead, "payload", "json")
        object.__setattr__(dead, "address", None)
        object.__setattr__(dead, "dead_of", self.name)
        object.__setattr__(dead, "providing_args", None)
        object.__setattr__(dead, "_required", frozenset())
        return dead

    @property
    def exchanges(self) -> tuple[Exchange, ...]:
        """The exchanges this queue is bound to, each once."""
        return tuple(dict.fromkeys(b.exchange for b in self.bindings))

    def make_payload(self, payload: Any) -> Any:
        """Validate against the schema (when there is one) and return a JSON-ready value."""
        if self.schema is None:
            return payload
        try:
            if isinstance(payload, self.schema):
                model = payload
            else:
                model = self.schema.model_validate(payload)
        except ValidationError as exc:
            raise PayloadError(f"queue {self.name!r}: {schema_errors(exc)}") from None
        return model.model_dump(mode="json")

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"

    def describe(self) -> str:
        """The whole declaration, for messages about conflicting ones."""
        parts = [repr(self.name)]
        if self.schema is not None:
            parts.append(f"schema={self.schema.__name__}")
        if self.payload != "json":
            parts.append(f"payload={self.payload!r}")
        if self.address is not None:
            parts.append(f"address={self.address!r}")
        if self.providing_args is not None:
            parts.append(f"providing_args={list(self.providing_args)!r}")
        if self.bindings:
            keys = [(b.exchange.name, b.key) for b in self.bindings]
            parts.append(f"bindings={keys!r}")
        return f"Queue({', '.join(parts)})"


_SIGNATURE: list[type[Signature[Any]]] = []


def _required(schema: type[BaseModel] | None, args: tuple[str, ...] | None) -> frozenset[str]:
    if schema is not None:
        fields = schema.model_fields
        return frozenset(name for name, info in fields.items() if info.is_required())
    return frozenset(args or ())


def _task_arguments(
    queue: str, schema: type[BaseModel] | None, providing_args: Iterable[str] | None
) -> tuple[str, ...] | None:
    """Check a queue's declared task arguments: identifiers, no duplicates, no name that
    ``submit`` keeps for its own options."""
    if providing_args is None and schema is None:
        return None
    if providing_args is not None and schema is not None:
        raise ConfigurationError(f"queue {queue!r}: give providing_args or schema, not both")
    if isinstance(providing_args, str):
        raise ConfigurationError(f"queue {queue!r}: providing_args must be a list of names")
    args = tuple(providing_args) if providing_args is not None else ()
    names = args if schema is None else tuple(schema.model_fields)
    for arg in names:
        if not isinstance(arg, str) or not arg.isidentifier():
            raise ConfigurationError(f"queue {queue!r}: argument {arg!r} is not an identifier")
        if arg in TASK_OPTIONS:
            raise ConfigurationError(
                f"queue {queue!r}: argument name {arg!r} is reserved "
                f"({', '.join(sorted(TASK_OPTIONS))} are submit's own options)"
            )
    if len(set(names)) != len(names):
        raise ConfigurationError(f"queue {queue!r}: duplicate argument in {list(names)}")
    return args if schema is None else None


T = TypeVar("T", bound=Signal | Queue)


class Namespace(Mapping[str, T], Generic[T]):
    """An immutable set of declarations with attribute access: ``signals.user_enter``."""

    __slots__ = ("_items", "_kind")
    _items: dict[str, T]
    _kind: str

    def __init__(self, items: Iterable[T] = (), *, kind: str = "declaration") -> None:
        found: dict[str, T] = {}
        for item in items:
            other = found.get(item.name)
            if other is not None and other != item:
                raise ConfigurationError(
                    f"conflicting declarations of {kind} {item.name!r}: {other!r} and {item!r}"
                )
            found[item.name] = item
        object.__setattr__(self, "_items", found)
        object.__setattr__(self, "_kind", kind)

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise UnknownNameError(f"unknown {self._kind} {name!r} (known: {known})") from None

    def get(self, name: str, default: Any = None) -> Any:
        """The declaration called ``name``, or ``default``: a Mapping's ``get``."""
        return self._items.get(name, default)

    def __getattr__(self, name: str) -> T:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, Signal | Queue):
            return self._items.get(key.name) == key
        return key in self._items

    def merge(self, other: Namespace[T] | Iterable[T]) -> Namespace[T]:
        """A new namespace with the declarations of both; a conflicting name is an error."""
        extra: list[T] = list(other.values()) if isinstance(other, Namespace) else list(other)
        items: list[T] = list(self._items.values())
        return Namespace(items + extra, kind=self._kind)

    def __repr__(self) -> str:
        return f"Namespace<{self._kind}>({', '.join(self._items)})"


def signals_of(items: Iterable[Signal] | Namespace[Signal] | None) -> Namespace[Signal]:
    if isinstance(items, Namespace):
        return items
    return Namespace(items or (), kind="signal")


def queues_of(items: Iterable[Queue] | Namespace[Queue] | None) -> Namespace[Queue]:
    if isinstance(items, Namespace):
        return items
    return Namespace(items or (), kind="queue")


_HOW_TO_DECLARE = {
    "signal": "Signal({name!r}, [...arguments])",
    "queue": "Queue({name!r})",
}


def lookup(kind: str, name: str, declared: Namespace[Any], registry: Registry) -> Any:
    """The declaration called ``name``: from ``declared`` (a bus's, broker's or agent's own),
    else from the program's registry; a clear error saying how to declare it otherwise."""
    found = declared.get(name)
    if found is None:
        found = registry.get(kind, name)
        if found is None:
            known = ", ".join(sorted({*declared, *registry.names(kind)})) or "none"
            how = _HOW_TO_DECLARE.get(kind, "a declaration").format(name=name)
            raise UnknownNameError(
                f"unknown {kind} {name!r} (known: {known}); declare it once anywhere in the "
                f"program — {how} in Python, or in a JSON catalog read by load_stuff(...) or "
                "given as --catalog — and every bus, broker and agent of it can use it"
            )
    return found


def undeclared_queue(name: str) -> Queue:
    """A schemaless queue for a name the program addresses without declaring it
    (``broker.queue("events")``: an existing engine queue). Not recorded in any registry."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        check_name("queue", name)
    queue = object.__new__(Queue)
    object.__setattr__(queue, "name", name)
    object.__setattr__(queue, "schema", None)
    object.__setattr__(queue, "bindings", ())
    object.__setattr__(queue, "payload", "json")
    object.__setattr__(queue, "address", None)
    object.__setattr__(queue, "dead_of", None)
    object.__setattr__(queue, "providing_args", None)
    object.__setattr__(queue, "_required", frozenset())
    return queue
