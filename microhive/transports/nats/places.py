"""Where a queue lives on JetStream: its stream, subjects and durable consumer.

A queue of microhive's own naming lives in the stream ``<prefix>_queue_<name>`` (subjects
``<prefix>.queue.<name>`` and ``<prefix>.retry.<name>``, durable ``<durable>``). A queue
with ``address="telemetry.raw"`` is sent to on that subject verbatim:

- when a stream already captures the subject (an operator's ``TELEMETRY`` on
  ``telemetry.>``), microhive uses it as it is — never updates, recreates or trims it — with
  a durable consumer of its own filtered on the subject (``<durable>_<queue>``, several queues
  can share one stream), and retries go to the same subject (marked, for microhive only);
- otherwise microhive creates ``<prefix>_queue_<name>`` with the subjects
  ``telemetry.raw`` and ``<prefix>.retry.<name>``, as for any queue of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import ConfigurationError
from .options import NatsOptions

_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9_-]")


def check_address(queue: str, address: str) -> str:
    """``address`` when it is a subject one can publish to (no wildcards, no spaces)."""
    tokens = address.split(".")
    if any(not token or token in ("*", ">") or not token.isprintable() for token in tokens) or (
        any(character.isspace() for character in address)
    ):
        raise ConfigurationError(
            f"queue {queue!r}: address {address!r} is not a NATS subject to publish to "
            "(dot-separated tokens, no spaces, no wildcards '*' or '>')"
        )
    return address


@dataclass(frozen=True, slots=True)
class Place:
    queue: str
    stream: str
    subject: str
    """Where sends go."""
    retry: str
    """Where retries go."""
    durable: str
    filter: str | None
    """The durable consumer's filter subject (None: the whole stream)."""
    owned: bool
    """microhive's own stream: created, redeclared and trimmed by microhive."""


def own(options: NatsOptions, queue: str, address: str | None = None) -> Place:
    """The place of a queue in a stream of microhive's naming."""
    return Place(
        queue,
        options.stream(queue),
        address or options.queue_subject(queue),
        options.retry_subject(queue),
        options.durable,
        None,
        True,
    )


def borrowed(options: NatsOptions, queue: str, stream: str, address: str) -> Place:
    """The place of a queue on an existing stream that captures ``address``."""
    durable = f"{options.durable}_{_NOT_IN_NAMES.sub('_', queue)}"
    return Place(queue, stream, address, address, durable, address, False)
