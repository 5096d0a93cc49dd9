"""Plain-function tasks: ``@task(queue)`` on a module-level function, async or sync.

The function stays callable as itself (``await add(x=1, y=1)``, ``mul(x=2, y=3)``), gains
``.s(...)`` for workflows, and runs in a worker made by ``tasks_agent`` (microhive/agent/
plain.py) or ``microhive run module``. A sync function runs in a thread of its own, so it
never blocks the event loop; a thread cannot be killed, so a timed-out one is abandoned
(its job fails or retries at once) and finishes in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from ..errors import ConfigurationError
from .canvas import Signature
from .canvas import signature as _signature
from .context import _CURRENT

if TYPE_CHECKING:
    from ..declarations import Queue

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def is_method(function: Callable[..., Any]) -> bool:
    """Whether ``function`` is an agent's method, from where it is defined (``__qualname__``):
    ``Math.add`` (a class body) is a method; ``add`` (module level) a plain function; and
    ``make.<locals>.add`` (inside a function) a plain function unless its first parameter is
    ``self`` (a method of a class the function builds with ``type(...)``)."""
    qualname = getattr(function, "__qualname__", None)
    if not isinstance(qualname, str) or not inspect.isfunction(function):
        raise ConfigurationError(f"@task decorates a function (def or async def), not {function!r}")
    parts = qualname.split(".")
    if len(parts) == 1:
        return False
    if parts[-2] != "<locals>":
        return True
    return next(iter(inspect.signature(function).parameters), None) == "self"


class TaskFunction(Generic[P, R]):
    """A plain function made a task by ``@task(queue)``: call it as before to run it here,
    ``.s(...)`` for a signature, ``broker.<queue>.submit(...)`` to queue it.

    ``queue`` is its queue; ``function`` the function itself; ``name`` its name;
    ``is_async`` whether it is ``async def`` (a sync one runs in a thread in the worker);
    ``handler`` what an agent calls, with itself first (microhive/agent/handlers.py), when
    the task is in its class body (``tasks_agent`` puts it there)."""

    def __init__(self, function: Callable[P, R], queue: Queue) -> None:
        functools.update_wrapper(self, function)  # name, doc, module and the specs
        self.function = function
        self.name: str = function.__name__
        self.queue = queue
        self.is_async = inspect.iscoroutinefunction(function)
        self.handler = _handler(function, self.is_async)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here, now, as if it were not a task (Celery's ``add(1, 1)``)."""
        return self.function(*args, **kwargs)

    def s(self, **arguments: Any) -> Signature[Any]:
        """A signature of this task, maybe partial: ``add.s(x=4, y=4)``, ``mul.s(y=8)``."""
        return self.queue.s(**arguments)

    def __repr__(self) -> str:
        function = self.function
        return f"<task {function.__module__}.{function.__qualname__} on {self.queue.name!r}>"


def _handler(function: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
    """``handler(agent, **arguments)``: awaits ``function``, or runs it in a thread when it
    is sync; its signature is the function's with the agent first (the handler's checks)."""
    if is_async:

        async def handler(agent: object, **arguments: Any) -> Any:
            call: Coroutine[Any, Any, Any] = function(**arguments)
            return await call

    else:
        name = function.__name__

        async def handler(agent: object, **arguments: Any) -> Any:
            return await in_thread(function, arguments, name)

    signature = inspect.signature(function)
    agent = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    handler.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[agent, *signature.parameters.values()]
    )
    handler.__name__ = function.__name__
    handler.__qualname__ = function.__qualname__
    handler.__module__ = function.__module__
    handler.__doc__ = function.__doc__
    return handler


@overload
def signature(
    task: TaskFunction[P, Coroutine[Any, Any, T]], *args: P.args, **arguments: P.kwargs
) -> Signature[T]: ...
@overload
def signature(task: TaskFunction[P, T], *args: P.args, **arguments: P.kwargs) -> Signature[T]: ...
@overload
def signature(
    task: Callable[Concatenate[Any, P], Awaitable[T]], *args: P.args, **arguments: P.kwargs
) -> Signature[T]: ...
def signature(task: Any, *args: Any, **arguments: Any) -> Signature[Any]:
    """A typed signature of a task: ``signature(add, x=1, y=1)`` for a plain function,
    ``signature(Math.add, x=1, y=1)`` for a method. Its type is ``Signature[int]`` (the
    task's result), so ``await broker.submit(...)`` is a ``Job[int]``, and the type checker
    checks the arguments against the function."""
    return _signature(task, *args, **arguments)


async def in_thread(function: Callable[..., T], arguments: dict[str, Any], name: str) -> T:
    """``function(**arguments)`` in a daemon thread of its own, with this context copied
    (``current_job()`` works there). Cancelled (timeout, shutdown), the wait ends at once
    and the thread is abandoned: it runs to its end unobserved, or dies with the process."""
    from ..agent.dispatch import failure

    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(value: Any, error: Exception | None) -> None:
        if not done.done():
            if error is None:
                done.set_result(value)
            else:
                done.set_exception(error)

    def work() -> None:
        value, error = None, None
        try:
            value = context.run(function, **arguments)
        except BaseException as exc:  # SystemExit in a task must not reach the loop's thread
            error = failure(exc)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=work, name=f"microhive-task-{name}", daemon=True).start()
    try:
        return await done
    except asyncio.CancelledError:
        job = context.get(_CURRENT)
        if job is not None:
            job.abandon()
        raise
