"""The declaration of a signal: its name and the arguments every sender must give."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import ConfigurationError, PayloadError
from .names import check_name, schema_errors
from .registry import active_registry

RESERVED_ARGUMENTS = frozenset({"sender", "signal", "timeout", "expect"})
"""Names that ``send``/``call``/``gather`` or receivers already use for themselves."""


@dataclass(frozen=True, slots=True)
class Signal:
    """A broadcast notification with declared arguments or a pydantic schema.

    Equality is by value, so ``signal == signals.user_enter`` works in receivers.
    """

    name: str
    providing_args: tuple[str, ...] = ()
    schema: type[BaseModel] | None = field(default=None, compare=False)
    _argument_set: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __init__(
        self,
        name: str,
        providing_args: Iterable[str] = (),
        *,
        schema: type[BaseModel] | None = None,
    ) -> None:
        check_name("signal", name)
        args = tuple(providing_args)
        for arg in args:
            if not isinstance(arg, str) or not arg.isidentifier():
                raise ConfigurationError(f"signal {name!r}: argument {arg!r} is not an identifier")
            if arg in RESERVED_ARGUMENTS:
                raise ConfigurationError(
                    f"signal {name!r}: argument name {arg!r} is reserved "
                    f"({', '.join(sorted(RESERVED_ARGUMENTS))} are taken by send/call/receivers)"
                )
        if len(set(args)) != len(args):
            raise ConfigurationError(f"signal {name!r}: duplicate argument in {list(args)}")
        if schema is not None and args:
            raise ConfigurationError(f"signal {name!r}: give providing_args or schema, not both")
        if schema is not None:
            args = tuple(schema.model_fields)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "providing_args", args)
        object.__setattr__(self, "schema", schema)
        object.__setattr__(self, "_argument_set", frozenset(args))
        active_registry().add("signal", self, self.shape())

    def shape(self) -> tuple[Any, ...]:
        """What two declarations of one name must agree on."""
        return (self.providing_args, self.schema)

    def make_payload(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Check arguments at the sender; the receivers then never see a bad signal."""
        if self.schema is not None:
            if extra := kwargs.keys() - self._argument_set:
                raise PayloadError(f"signal {self.name!r}: undeclared {sorted(extra)}")
            try:
                return self.schema.model_validate(dict(kwargs)).model_dump(mode="json")
            except ValidationError as exc:
                raise PayloadError(f"signal {self.name!r}: {schema_errors(exc)}") from None
        if kwargs.keys() != self._argument_set:
            declared = set(self.providing_args)
            given = set(kwargs)
            problems = []
            if missing := declared - given:
                problems.append(f"missing {sorted(missing)}")
            if extra := given - declared:
                problems.append(f"undeclared {sorted(extra)}")
            raise PayloadError(
                f"signal {self.name!r} takes {list(self.providing_args)}: " + ", ".join(problems)
            )
        return dict(kwargs)

    def __repr__(self) -> str:
        return f"Signal({self.name!r})"

    def describe(self) -> str:
        """The whole declaration, for messages about conflicting ones."""
        if self.schema is not None:
            return f"Signal({self.name!r}, schema={self.schema.__name__})"
        return f"Signal({self.name!r}, {list(self.providing_args)!r})"
