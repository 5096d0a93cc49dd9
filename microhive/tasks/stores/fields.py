"""What every store does the same way before it writes a transition."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from ..store import JobRecord, JobState


def changed(
    record: JobRecord, state: JobState | None, changes: Mapping[str, Any] | None
) -> JobRecord:
    """``record`` with ``changes`` (JobRecord field names) and ``state`` (``None``: kept)."""
    fields = dict(changes or {})
    if state is not None:
        fields["state"] = state
    return msgspec.structs.replace(record, **fields)
