"""What a task message carries beside its arguments: the job id and the workflow's rest.

Headers are strings, so each structure travels as compact JSON in one header
(docs/wire-format.md, "Tasks"). The continuation of a workflow rides on the message of the
step before it: whoever runs that step enqueues what comes next, so the caller may die
right after submitting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

JOB = "x-job"
"""The job id; a message without it is a job whose id is the message id."""
CHAIN = "x-chain"
"""The steps after this one (a JSON list of steps); the last one's job is the chain's."""
GROUP = "x-group"
"""This job (or the chain it ends) is a member of a group: ``{"id", "size", "then", "chain",
"group"}`` — what follows the group's completion: ``then`` and the ``chain`` after it, and
the ``group`` the group itself is a member of (nested workflows)."""
LINK = "x-link"
"""Steps to enqueue with this job's result once it succeeded."""
LINK_ERROR = "x-link-error"
"""Steps to enqueue with this job's id once it failed for good."""


class Step(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One task still to run: its queue, the arguments known now, the argument ``fill``
    that the value it waits for goes into, its (deterministic) job id, its own callbacks.

    With ``members`` it is a group instead (``queue`` empty): each member is the list of
    steps of a chain (one step for a plain member), whose last job is ``<job>.<i>``."""

    queue: str
    job: str
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    fill: str | None = None
    link: list[Step] = msgspec.field(default_factory=list)
    link_error: list[Step] = msgspec.field(default_factory=list)
    members: list[list[Step]] | None = None


class GroupInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The group a job is a member of, and what follows once all its members are final:
    ``then`` (a chord's callback, or the next step of a chain), then the rest of that
    ``chain``; ``group``: the outer group this group's chain is a member of."""

    id: str
    size: int
    then: Step | None = None
    chain: list[Step] = msgspec.field(default_factory=list)
    group: GroupInfo | None = None


_encoder = msgspec.json.Encoder()
_steps = msgspec.json.Decoder(list[Step])
_group = msgspec.json.Decoder(GroupInfo)


def encode(value: Any) -> str:
    return _encoder.encode(value).decode()


class Continuation(msgspec.Struct, kw_only=True):
    """A task message's workflow headers, decoded."""

    chain: list[Step] = msgspec.field(default_factory=list)
    group: GroupInfo | None = None
    link: list[Step] = msgspec.field(default_factory=list)
    link_error: list[Step] = msgspec.field(default_factory=list)

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> Continuation:
        """Read the headers; a malformed one raises ``msgspec.DecodeError``."""
        if (len(headers) <= 1 and JOB in headers) or not headers:
            return _NOTHING  # a plain job: nothing follows it (never changed by readers)
        chain = headers.get(CHAIN)
        group = headers.get(GROUP)
        link = headers.get(LINK)
        link_error = headers.get(LINK_ERROR)
        return cls(
            chain=_steps.decode(chain) if chain else [],
            group=_group.decode(group) if group else None,
            link=_steps.decode(link) if link else [],
            link_error=_steps.decode(link_error) if link_error else [],
        )


_NOTHING = Continuation()


def headers_for(
    job: str,
    *,
    chain: list[Step] | None = None,
    group: GroupInfo | None = None,
    link: list[Step] | None = None,
    link_error: list[Step] | None = None,
) -> dict[str, str]:
    headers = {JOB: job}
    if chain:
        headers[CHAIN] = encode(chain)
    if group is not None:
        headers[GROUP] = encode(group)
    if link:
        headers[LINK] = encode(link)
    if link_error:
        headers[LINK_ERROR] = encode(link_error)
    return headers
