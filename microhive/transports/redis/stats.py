"""A queue's figures on Redis, from its consumer group, its dead-letter stream and the
group's presence set.

- **in flight**: the group's pending entries (``XINFO GROUPS``: delivered, not
  acknowledged) — held by live consumers, or left by dead ones until another reclaims them
  after ``claim_idle``;
- **consumers**: the group's consumers that said they are alive within ``claim_idle``
  (:mod:`.keeper` writes it every ``claim_interval`` and removes it at close; one that
  crashed counts until ``claim_idle`` passes). Redis cannot tell this itself: it keeps a
  group's consumer names after they stopped, and 7.0 creates none for a blocking read that
  got nothing.
"""

from __future__ import annotations

import time
from typing import Any

from .commands import Commands
from .link import ReplyError


def fields(reply: Any) -> dict[bytes, Any]:
    """One XINFO record (a flat list in RESP2, a map in RESP3) as a dict."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=False))


async def pending(commands: Commands, stream: str, group: str) -> int:
    """Entries of ``stream`` delivered to ``group`` and not acknowledged (0 while the stream
    or the group does not exist yet)."""
    try:
        groups = [fields(item) for item in await commands.run(b"XINFO", b"GROUPS", stream)]
    except ReplyError as exc:
        if "no such key" in str(exc):
            return 0
        raise
    found = [g for g in groups if g.get(b"name") == group.encode()]
    return int(found[0].get(b"pending", 0)) if found else 0


async def consumers(commands: Commands, presence: str, seen_within: float) -> int:
    """Consumers seen within ``seen_within`` seconds; older names are dropped."""
    since = time.time() - seen_within
    await commands.run(b"ZREMRANGEBYSCORE", presence, b"-inf", f"({since!r}")
    return int(await commands.run(b"ZCOUNT", presence, repr(since), b"+inf"))
