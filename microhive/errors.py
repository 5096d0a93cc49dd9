"""Every error microhive raises derives from :class:`MicroHiveError`.

The hierarchy follows who must act: configuration errors stop a program before it runs,
sender errors reach the code that sent, call errors reach the caller, transport errors are
retried by the framework and surface only when it gives up.
"""

from __future__ import annotations

import math


class MicroHiveError(Exception):
    """Base class of microhive's errors."""


class ConfigurationError(MicroHiveError):
    """A program is wired wrongly: unknown URL scheme, agent without a bus, bad handler."""


class CatalogError(ConfigurationError):
    """A catalog (the seed's JSON declarations) is malformed; the message names file and entry."""


class UnknownNameError(ConfigurationError, AttributeError):
    """A signal or queue name that no catalog declares."""


class CapabilityError(MicroHiveError):
    """The transport cannot do what was asked (a capability flag is off)."""


class PayloadError(MicroHiveError, ValueError):
    """A payload was refused at the sender: wrong arguments, schema violation, not encodable."""


class PayloadTooLarge(PayloadError):
    """The encoded message exceeds the codec's size limit."""


class UnroutableError(MicroHiveError):
    """A routed message matched no queue binding: nobody would ever receive it.

    Raised at the sender by ``broker.publish(...)`` (AMQP: the mandatory publish was returned).
    """


class DecodeError(MicroHiveError, ValueError):
    """Bytes received from the wire are not a valid message."""


class CallError(MicroHiveError):
    """Base class of errors a call raises at the caller."""


class CallTimeout(CallError, TimeoutError):
    """No receiver answered a call within its timeout."""


class RemoteError(CallError):
    """A receiver raised while answering a call.

    ``remote_type`` and ``remote_message`` describe the exception on the remote side,
    ``responder`` names the agent instance that answered.
    """

    def __init__(self, remote_type: str, remote_message: str, responder: str = "") -> None:
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.responder = responder
        where = f" in {responder}" if responder else ""
        super().__init__(f"{remote_type}{where}: {remote_message}")


class TransportError(MicroHiveError):
    """The engine failed or is unreachable; the URL in the message never shows a password."""


class ConsumerClosed(MicroHiveError):
    """Raised by a consumer's ``get()`` once it was closed: intake has stopped."""


class HandlerTimeout(MicroHiveError, TimeoutError):
    """A handler ran longer than its ``timeout``; it was cancelled."""


class HandlerAborted(MicroHiveError):
    """A handler or scheduled job raised a ``BaseException`` that is not an ``Exception``.

    ``CancelledError`` it raised itself, ``SystemExit`` (``sys.exit()``), ``KeyboardInterrupt``
    or a custom ``BaseException``: counted as that message's (or run's) failure, like any
    exception — retried, then dead-lettered — and never allowed to end a consumer worker, a
    schedule or the process. ``original`` is what the handler raised.
    """

    def __init__(self, message: str, original: BaseException) -> None:
        super().__init__(message)
        self.original = original


class PartialFailure(MicroHiveError):
    """Raised by a batch handler to fail only some items of its batch.

    ``failures`` maps an item's index in the list the handler got to the exception that item
    failed with; each of those messages is retried or dead-lettered by its own attempts, and
    every other message of the batch is acknowledged.
    """

    def __init__(self, failures: dict[int, BaseException]) -> None:
        self.failures = dict(failures)
        items = ", ".join(f"{index}: {type(exc).__name__}" for index, exc in self.failures.items())
        super().__init__(f"{len(self.failures)} item(s) of the batch failed ({items})")


class Reject(MicroHiveError):
    """Raised by a consumer to dead-letter its message now, without further attempts.

    ``raise Reject("division by zero")``: the message goes to the queue's dead letters with
    the reason ``"Reject: division by zero"`` (with ``dead_letter=False`` it is dropped).
    The error hooks run as for any failure.
    """

    def __init__(self, reason: str = "rejected") -> None:
        super().__init__(reason)
        self.reason = reason


class Retry(MicroHiveError):
    """Raised by a consumer to try its message again after ``delay`` seconds.

    The attempt counts like any failure: past the consumer's ``retries`` the message is
    dead-lettered. ``delay=None`` uses the consumer's backoff.
    """

    def __init__(self, reason: str = "retry requested", *, delay: float | None = None) -> None:

        if delay is not None and (
            not isinstance(delay, int | float) or not math.isfinite(delay) or delay < 0
        ):
            raise ValueError(f"Retry(delay=...) must be a number of seconds >= 0, not {delay!r}")
        super().__init__(reason)
        self.delay = delay


class TaskError(MicroHiveError):
    """Base class of what waiting for a job's result raises at the caller."""


class TaskFailed(TaskError):
    """The job failed for good: ``remote_type`` and ``remote_message`` describe the
    exception the task raised on the worker (or why the worker could not run it)."""

    def __init__(self, job_id: str, remote_type: str, remote_message: str) -> None:
        self.job_id = job_id
        self.remote_type = remote_type
        self.remote_message = remote_message
        super().__init__(f"job {job_id}: {remote_type}: {remote_message}")


class TaskRevoked(TaskError):
    """The job was revoked (``job.revoke()``): it will never have a result.

    Also raised inside a running task at its next ``progress()`` or ``check_revoked()``
    once someone revoked it, so it can stop cooperatively."""

    def __init__(self, job_id: str, reason: str = "revoked") -> None:
        self.job_id = job_id
        self.reason = reason
        super().__init__(f"job {job_id} was revoked: {reason}")


class ResultTimeout(TaskError, TimeoutError):
    """The job was not finished within ``result(timeout=...)``; it may still finish."""

    def __init__(self, job_id: str, state: str, timeout: float) -> None:
        self.job_id = job_id
        self.state = state
        super().__init__(f"job {job_id} is still {state} after {timeout:g} s")
