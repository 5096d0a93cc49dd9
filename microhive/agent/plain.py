"""``tasks_agent("math", add, mul)``: a worker (a MicroAgent subclass) made of plain tasks.

Each ``@task`` function becomes a method of the class, named as the function, so the class
runs like any agent: ``async with Math(None, broker)``, ``microhive run module:Math``,
hooks ``@on("error_add")`` in a subclass. A sync function runs in a thread of its own
(microhive/tasks/functions.py).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from ..errors import ConfigurationError
from ..tasks.functions import TaskFunction, in_thread
from .agent import MicroAgent
from .decorators import SPECS_ATTRIBUTE, specs_of

TASKS_ATTRIBUTE = "__microhive_tasks__"
"""On a class made by :func:`tasks_agent`: the task functions it runs."""

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
    namespace: dict[str, Any] = {
        "__module__": module,
        "__qualname__": name,
        TASKS_ATTRIBUTE: tasks,
    }
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
        namespace[attribute] = _method(task, f"{name}.{attribute}")
    namespace["__doc__"] = f"Runs the plain tasks {', '.join(t.name for t in tasks)}."
    return type(name, (MicroAgent,), namespace)


def _method(task: TaskFunction[..., Any], qualname: str) -> Callable[..., Any]:
    """An agent method that runs ``task``: awaits it, or runs it in a thread when sync."""
    function = task.function
    if task.is_async:

        async def method(self: MicroAgent, **arguments: Any) -> Any:
            call: Coroutine[Any, Any, Any] = function(**arguments)
            return await call

    else:
        thread_name = task.name

        async def method(self: MicroAgent, **arguments: Any) -> Any:
            return await in_thread(function, arguments, thread_name)

    parameters = list(inspect.signature(function).parameters.values())
    myself = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__signature__ = inspect.signature(function).replace(  # type: ignore[attr-defined]
        parameters=[myself, *parameters]
    )
    method.__name__ = task.name
    method.__qualname__ = qualname
    method.__doc__ = task.__doc__
    method.__module__ = function.__module__
    method.__wrapped__ = function  # type: ignore[attr-defined]
    setattr(method, SPECS_ATTRIBUTE, specs_of(task))
    return method
