"""Finding an agent class's handlers, and calling them with the arguments they accept."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..declarations import Signal
from ..errors import ConfigurationError
from ..tasks.functions import TaskFunction
from .decorators import specs_of
from .specs import ConsumerSpec, CronSpec, HookSpec, PeriodicSpec, ReceiverSpec, Spec

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


class Parameters:
    """What a handler accepts, precomputed so each call is a couple of set operations."""

    __slots__ = ("names", "positional", "required", "takes_sender", "takes_signal", "var_keyword")

    def __init__(self, function: Callable[..., Any]) -> None:
        parameters = list(inspect.signature(function).parameters.values())[1:]  # drop self
        self.var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
        self.names = frozenset(p.name for p in parameters if p.kind in _NAMED)
        self.required = frozenset(
            p.name for p in parameters if p.kind in _NAMED and p.default is inspect.Parameter.empty
        )
        self.positional = any(
            p.kind
            in (
                inspect.Parameter.POSITIONAL_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                inspect.Parameter.VAR_POSITIONAL,
            )
            for p in parameters
        )
        self.takes_signal = self.accepts("signal")
        self.takes_sender = self.accepts("sender")

    def accepts(self, name: str) -> bool:
        return self.var_keyword or name in self.names

    def misfit(self, keys: Mapping[str, Any]) -> str | None:
        """Why ``keys`` cannot be passed as keywords, or None when they can."""
        if keys.keys() == self.names:  # the common case, in one comparison
            return None
        if missing := self.required - keys.keys():
            return f"missing {sorted(missing)}"
        if not self.var_keyword and (extra := keys.keys() - self.names):
            return f"unexpected {sorted(extra)}"
        return None


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    function: Callable[..., Any]
    spec: Spec
    parameters: Parameters


@dataclass(frozen=True, slots=True)
class Handlers:
    receivers: tuple[Handler, ...] = ()
    consumers: tuple[Handler, ...] = ()
    schedules: tuple[Handler, ...] = ()
    hooks: tuple[Handler, ...] = ()

    @property
    def signals(self) -> tuple[Signal, ...]:
        found: dict[str, Signal] = {}
        for handler in self.receivers:
            assert isinstance(handler.spec, ReceiverSpec)
            for signal in handler.spec.signals:
                found.setdefault(signal.name, signal)
        return tuple(found.values())

    def hooks_for(self, event: str) -> tuple[Handler, ...]:
        return tuple(
            h for h in self.hooks if isinstance(h.spec, HookSpec) and h.spec.event == event
        )


def collect(cls: type) -> Handlers:
    """The handlers of ``cls``, bases first; an override without a decorator removes one."""
    functions: dict[str, Callable[..., Any]] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            functions.pop(name, None)  # re-insert so definition order follows the override
            if callable(value):
                functions[name] = value
    groups: dict[str, list[Handler]] = {"r": [], "c": [], "s": [], "h": []}
    for name, function in functions.items():
        # a plain @task function put in a class body runs as a method would
        call = function.handler if isinstance(function, TaskFunction) else function
        for spec in specs_of(function):
            handler = Handler(name, call, spec, Parameters(call))
            key = {
                ReceiverSpec: "r",
                ConsumerSpec: "c",
                PeriodicSpec: "s",
                CronSpec: "s",
                HookSpec: "h",
            }[type(spec)]
            groups[key].append(handler)
    handlers = Handlers(*(tuple(groups[k]) for k in "rcsh"))
    _check(cls, handlers)
    return handlers


def _check(cls: type, handlers: Handlers) -> None:
    names = {
        h.name
        for group in (handlers.receivers, handlers.consumers, handlers.schedules)
        for h in group
    }
    for hook in handlers.hooks:
        assert isinstance(hook.spec, HookSpec)
        event = hook.spec.event
        if event.startswith("error_") and event[len("error_") :] not in names:
            raise ConfigurationError(
                f"{cls.__qualname__}.{hook.name}: @on({event!r}) names no handler "
                f"(handlers: {', '.join(sorted(names)) or 'none'})"
            )
    for handler in handlers.receivers:
        assert isinstance(handler.spec, ReceiverSpec)
        for signal in handler.spec.signals:
            missing = [a for a in signal.providing_args if not handler.parameters.accepts(a)]
            if missing:
                raise ConfigurationError(
                    f"{cls.__qualname__}.{handler.name}: receives {signal.name!r} but does not "
                    f"accept its arguments {missing} (add them or **kwargs)"
                )
            never_given = handler.parameters.required - {*signal.providing_args, "signal", "sender"}
            if never_given:
                raise ConfigurationError(
                    f"{cls.__qualname__}.{handler.name}: requires {sorted(never_given)}, which "
                    f"signal {signal.name!r} does not provide (give them defaults)"
                )
    for handler in handlers.consumers:
        assert isinstance(handler.spec, ConsumerSpec)
        if handler.spec.batch and (
            not handler.parameters.positional or len(handler.parameters.required) > 1
        ):
            raise ConfigurationError(
                f"{cls.__qualname__}.{handler.name}: a batch consumer takes one argument, "
                "the list of payloads"
            )
    for handler in handlers.schedules:
        if handler.parameters.required:
            raise ConfigurationError(
                f"{cls.__qualname__}.{handler.name}: a scheduled handler takes no arguments"
            )
