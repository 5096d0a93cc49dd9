"""``tasks_agent("math", add, mul)``: a worker (a MicroAgent subclass) made of plain tasks.

Each ``@task`` function becomes a class attribute named as the function, which the agent
runs as it runs its methods (microhive/agent/handlers.py); so the class runs like any
agent: ``async with Math(None, broker)``, ``microhive run module:Math``, hooks
``@on("error_add")`` in a subclass. A sync function runs in a thread of its own
(microhive/tasks/functions.py).
"""

from __future__ import annotations

import sys
from typing import Any

from ..errors import ConfigurationError
from ..tasks.functions import TaskFunction
from .agent import MicroAgent

TARGET_ATTRIBUTE = "__microhive_target__"
"""On a class made for ``microhive run module``: the target that makes it again."""

_INSTANCE_ATTRIBUTES = frozenset(
    ("name", "instance_id", "settings", "grace_period", "heartbeat", "log", "bus", "broker")
)


def tasks_agent(
    name: str, *tasks: TaskFunction[..., Any], module: str | None = None
) -> type[MicroAgent]:
    """A MicroAgent subclass named ``name`` that runs ``tasks`` (plain ``@task`` functions).

    As ``namedtuple``, the class belongs to the calling module unless ``module`` says
    otherwise; bind it to a module-level name so ``microhive run module:Name`` finds it:
    ``Math = tasks_agent("Math", add, mul)``.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigurationError(f"tasks_agent: name must be an identifier, not {name!r}")
    if not tasks:
        raise ConfigurationError(f"tasks_agent({name!r}): give one or more @task functions")
    if module is None:
        module = sys._getframe(1).f_globals.get("__name__", "__main__")
    namespace: dict[str, Any] = {"__module__": module, "__qualname__": name}
    for task in tasks:
        if not isinstance(task, TaskFunction):
            raise ConfigurationError(
                f"tasks_agent({name!r}): {task!r} is not a plain function decorated with @task"
            )
        attribute = task.name
        if attribute in namespace:
            raise ConfigurationError(f"tasks_agent({name!r}): two tasks named {attribute!r}")
        if (
            attribute.startswith("_")
            or attribute in _INSTANCE_ATTRIBUTES
            or hasattr(MicroAgent, attribute)
        ):
            raise ConfigurationError(
                f"tasks_agent({name!r}): a task cannot be named {attribute!r}, a name the "
                "agent uses itself: rename the function"
            )
        namespace[attribute] = task
    namespace["__doc__"] = f"Runs the plain tasks {', '.join(t.name for t in tasks)}."
    return type(name, (MicroAgent,), namespace)


def tasks_of(cls: type) -> list[TaskFunction[..., Any]]:
    """The plain tasks a class runs (in its body or a base's)."""
    return [v for k in cls.__mro__ for v in vars(k).values() if isinstance(v, TaskFunction)]


def target_of(cls: type) -> str:
    """The ``module:Name`` target that loads ``cls`` again (in a child process)."""
    made = cls.__dict__.get(TARGET_ATTRIBUTE)
    if isinstance(made, str):
        return made
    module = sys.modules.get(cls.__module__)
    if module is not None and getattr(module, cls.__qualname__, None) is not cls:
        for name, value in vars(module).items():  # a class made by tasks_agent, bound to a name
            if value is cls:
                return f"{cls.__module__}:{name}"
    return f"{cls.__module__}:{cls.__qualname__}"
