"""The seed's decorator API: ``@receiver``, ``@consumer``, ``@periodic``, ``@cron``, ``@on``.

Decorators only attach a spec to the function; nothing is registered anywhere. The agent
class collects the specs when it is defined, so a bad declaration fails at import time.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, overload
from zoneinfo import ZoneInfo

from ..declarations import TASK_OPTIONS, Queue, Signal
from ..errors import ConfigurationError
from ..leases import DEFAULT_LEASE_TTL, check_ttl
from ..retry import Backoff
from ..tasks.functions import TaskFunction, is_method
from ..tasks.store import DEFAULT_MAX_RESULT_SIZE, DEFAULT_RESULT_TTL
from .specs import (
    HOOK_EVENTS,
    ConsumerSpec,
    HookSpec,
    PeriodicSpec,
    ReceiverSpec,
    Spec,
    TaskOptions,
    check_timeout,
    make_cron,
    parse_rate,
)

if TYPE_CHECKING:
    from .agent import MicroAgent

F = TypeVar("F", bound=Callable[..., Any])
A = TypeVar("A", bound="MicroAgent")
P = ParamSpec("P")
R = TypeVar("R")

SPECS_ATTRIBUTE = "__microhive_specs__"


def specs_of(function: object) -> tuple[Spec, ...]:
    return tuple(getattr(function, SPECS_ATTRIBUTE, ()))


def _attach(function: F, spec: Spec, *, coroutine: bool = True) -> F:
    if coroutine and not inspect.iscoroutinefunction(function):
        name = getattr(function, "__qualname__", repr(function))
        raise ConfigurationError(f"{name}: a handler must be 'async def'")
    setattr(function, SPECS_ATTRIBUTE, (*specs_of(function), spec))
    return function


def receiver(*signals: Signal, timeout: float | None = 60) -> Callable[[F], F]:
    """Receive ``signals``; the handler gets ``signal``, ``sender`` and the arguments.

    A value returned by the handler answers a call of the signal.
    """
    if not signals or not all(isinstance(s, Signal) for s in signals):
        raise ConfigurationError("@receiver needs one or more Signal declarations")
    spec = ReceiverSpec(tuple(signals), check_timeout("@receiver", timeout))
    return lambda function: _attach(function, spec)


def consumer(
    queue: Queue,
    *,
    timeout: float | None = 60,
    concurrency: int = 1,
    retries: int = 3,
    backoff: float | Backoff = 1.0,
    dead_letter: bool = True,
    autoack: bool = False,
    batch: int | None = None,
    batch_timeout: float = 0.05,
) -> Callable[[F], F]:
    """Consume ``queue``: ack after the handler returned, retry on failure, then dead-letter.

    ``concurrency`` bounds handlers running at once (and so the prefetch). ``retries`` is how
    many times a failed message is tried again; ``backoff`` the first delay in seconds (or a
    :class:`Backoff`). ``autoack=True`` acknowledges on receipt: at-most-once, no retries.
    ``batch=N`` hands the handler a list of up to N payloads, gathered for at most
    ``batch_timeout`` seconds after the first arrived, and acknowledged together when it
    returns; ``timeout`` then covers the whole batch.
    """
    spec = _consumer_spec(
        "@consumer",
        queue,
        timeout,
        concurrency,
        retries,
        backoff,
        dead_letter,
        autoack,
        batch,
        batch_timeout,
    )
    return lambda function: _attach(function, spec)


def _consumer_spec(
    what: str,
    queue: Queue,
    timeout: float | None,
    concurrency: int,
    retries: int,
    backoff: float | Backoff,
    dead_letter: bool,
    autoack: bool,
    batch: int | None,
    batch_timeout: float,
) -> ConsumerSpec:
    if not isinstance(queue, Queue):
        raise ConfigurationError(f"{what} needs a Queue declaration")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(f"{what}({queue.name!r}): concurrency must be >= 1")
    if not isinstance(retries, int) or retries < 0:
        raise ConfigurationError(f"{what}({queue.name!r}): retries must be >= 0")
    if isinstance(backoff, int | float) and not isinstance(backoff, bool):
        try:
            backoff = Backoff(initial=float(backoff))
        except ConfigurationError as exc:
            raise ConfigurationError(f"{what}({queue.name!r}): {exc}") from None
    elif not isinstance(backoff, Backoff):
        raise ConfigurationError(
            f"{what}({queue.name!r}): backoff must be seconds (a number) or a Backoff"
        )
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        raise ConfigurationError(f"{what}({queue.name!r}): batch must be an integer >= 1")
    if (
        not isinstance(batch_timeout, int | float)
        or not math.isfinite(batch_timeout)
        or batch_timeout < 0
    ):
        raise ConfigurationError(f"{what}({queue.name!r}): batch_timeout must be a number >= 0")
    spec = ConsumerSpec(
        queue,
        check_timeout(f"{what}({queue.name!r})", timeout),
        concurrency,
        retries,
        backoff,
        dead_letter,
        autoack,
        batch or 0,
        float(batch_timeout),
    )
    return spec


def task(
    queue: Queue,
    *,
    timeout: float | None = 60,
    concurrency: int = 1,
    retries: int = 0,
    backoff: float | Backoff = 1.0,
    dead_letter: bool = False,
    result_ttl: float = DEFAULT_RESULT_TTL,
    max_result_size: int = DEFAULT_MAX_RESULT_SIZE,
    rate_limit: str | None = None,
) -> TaskDecorator:
    """A task on ``queue``: a consumer whose return value is kept as the job's result.

    Submitted with ``broker.<queue>.submit(**arguments)``; arguments are keywords. Failures
    are retried ``retries`` times (state ``retrying`` in between; none by default, as in
    Celery), then the job fails; its message is dead-lettered only with
    ``dead_letter=True`` (a requeued message of a finished job is skipped). The record is
    kept ``result_ttl`` seconds after its last change; a result bigger than
    ``max_result_size`` bytes once encoded (or not JSON) fails the job with that reason.
    ``rate_limit="10/s"`` (or ``/m``, ``/h``, ``/30s``) starts at most that many jobs per
    window across every worker, counted in the result store; the others wait, pending,
    for the next window.

    On an agent's method (``async def``) it returns the method. On a plain function (module
    level or inside a function; ``def`` or ``async def``) it returns a
    :class:`~microhive.tasks.functions.TaskFunction`, still callable as the function, run
    by ``tasks_agent(...)`` or ``microhive run module`` (see docs/tasks.md).
    """
    spec = _consumer_spec(
        "@task", queue, timeout, concurrency, retries, backoff, dead_letter, False, None, 0.05
    )
    if not isinstance(result_ttl, int | float) or not math.isfinite(result_ttl) or result_ttl <= 0:
        raise ConfigurationError(f"@task({queue.name!r}): result_ttl must be seconds > 0")
    if not isinstance(max_result_size, int) or max_result_size < 1:
        raise ConfigurationError(f"@task({queue.name!r}): max_result_size must be bytes >= 1")
    rate = parse_rate(f"@task({queue.name!r})", rate_limit)
    return TaskDecorator(replace(spec, task=TaskOptions(float(result_ttl), max_result_size, rate)))


class TaskDecorator:
    """What ``@task(...)`` applies: a method stays a method (typed as itself), a plain
    function becomes a :class:`TaskFunction` (typed with its parameters and result)."""

    __slots__ = ("spec",)

    def __init__(self, spec: ConsumerSpec) -> None:
        self.spec = spec

    @overload
    def __call__(
        self, function: Callable[Concatenate[A, P], R]
    ) -> Callable[Concatenate[A, P], R]: ...
    @overload
    def __call__(self, function: Callable[P, R]) -> TaskFunction[P, R]: ...
    def __call__(self, function: Callable[..., Any]) -> Any:
        queue = self.spec.queue
        if isinstance(function, TaskFunction):
            raise ConfigurationError(f"{function!r} is a task already: one queue per function")
        name = getattr(function, "__qualname__", repr(function))
        method = is_method(function)
        if method and not inspect.iscoroutinefunction(function):
            raise ConfigurationError(
                f"{name}: a task method must be 'async def' (an agent runs on the event loop);"
                " a plain function (module level) with @task may be sync: it runs in a thread"
            )
        if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
            raise ConfigurationError(f"{name}: a task returns its result, it is no generator")
        _check_task(function, queue, method)
        attached = _attach(function, self.spec, coroutine=method)
        return attached if method else TaskFunction(attached, queue)


_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _check_task(function: Callable[..., Any], queue: Queue, method: bool) -> None:
    """A task takes keywords, none of them ``submit``'s options, and (when the queue
    declares its arguments) exactly what the queue declares; a method takes ``self`` first."""
    name = getattr(function, "__qualname__", repr(function))
    parameters = list(inspect.signature(function).parameters.values())
    if method:
        if not parameters or parameters[0].kind not in _POSITIONAL:
            raise ConfigurationError(f"{name}: a task method takes self first")
        parameters = parameters[1:]
    for parameter in parameters:
        if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
            raise ConfigurationError(f"{name}: task arguments are keywords, not {parameter}")
        if parameter.name in TASK_OPTIONS:
            raise ConfigurationError(
                f"{name}: argument name {parameter.name!r} is reserved "
                f"({', '.join(sorted(TASK_OPTIONS))} are submit's own options)"
            )
    declared = queue.arguments
    if declared is None:
        return
    accepted = {p.name for p in parameters if p.kind in _NAMED}
    var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    if not var_keyword and (missing := [a for a in declared if a not in accepted]):
        raise ConfigurationError(
            f"{name}: queue {queue.name!r} declares arguments {missing} it does not take"
        )
    required = {p.name for p in parameters if p.kind in _NAMED and p.default is p.empty}
    if never := sorted(required - set(declared)):
        raise ConfigurationError(
            f"{name}: requires {never}, which queue {queue.name!r} does not declare"
        )


def periodic(
    period: float,
    *,
    timeout: float | None = 60,
    start_after: float = 0,
    jitter: float = 0,
    single: bool = False,
    lease_ttl: float = DEFAULT_LEASE_TTL,
) -> Callable[[F], F]:
    """Run every ``period`` seconds; a run that is still going makes the next one skip.

    By default every replica (process) of the agent runs its own schedule. ``single=True``
    runs each tick once across them: ticks fall on wall-clock multiples of ``period``, and
    the replica holding a lease on the engine runs them; it expires ``lease_ttl`` seconds
    after its holder stopped renewing it (see docs/concepts.md, single-runner schedules).
    """
    for name, value, minimum in (
        ("period", period, 1e-3),
        ("start_after", start_after, 0),
        ("jitter", jitter, 0),
    ):
        if not isinstance(value, int | float) or not math.isfinite(value) or value < minimum:
            raise ConfigurationError(f"@periodic: {name} must be a number >= {minimum}")
    spec = PeriodicSpec(
        float(period),
        check_timeout("@periodic", timeout),
        float(start_after),
        float(jitter),
        _check_single("@periodic", single),
        check_ttl("@periodic", lease_ttl),
    )
    return lambda function: _attach(function, spec)


def cron(
    expression: str,
    *,
    timeout: float | None = 60,
    tz: str | ZoneInfo | None = None,
    single: bool = False,
    lease_ttl: float = DEFAULT_LEASE_TTL,
) -> Callable[[F], F]:
    """Run on a 5-field cron schedule (``"0 */4 * * *"``, ``"@daily"``) in ``tz``.

    ``tz`` defaults to the machine's local time zone. ``single=True``: each fire time runs
    once across the agent's replicas, as for :func:`periodic`."""
    spec = replace(
        make_cron(expression, timeout, tz),
        single=_check_single(f"@cron({expression!r})", single),
        lease_ttl=check_ttl(f"@cron({expression!r})", lease_ttl),
    )
    return lambda function: _attach(function, spec)


def _check_single(what: str, single: bool) -> bool:
    if not isinstance(single, bool):
        raise ConfigurationError(f"{what}: single must be True or False")
    return single


def on(event: str) -> Callable[[F], F]:
    """A lifecycle or error hook: ``pre_start``, ``post_start``, ``pre_stop``, ``post_stop``,
    ``error`` (any handler) or ``error_<handler name>``. Sync or async."""
    if not isinstance(event, str) or not (event in HOOK_EVENTS or event.startswith("error_")):
        raise ConfigurationError(
            f"@on({event!r}): unknown event (use {', '.join(HOOK_EVENTS)} or error_<handler>)"
        )
    spec = HookSpec(event)
    return lambda function: _attach(function, spec, coroutine=False)
