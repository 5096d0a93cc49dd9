"""What every engine's link shares: the reconnect policy, the error for a lost link, and the
default budget for the first connection.

Each engine's ``link.py`` owns its connection; these are the parts that must not differ
between engines (a user switching ``redis://`` for ``nats://`` sees the same behaviour).
"""

from __future__ import annotations

from ..errors import TransportError
from ..retry import RECONNECT

__all__ = ["CONNECT_TIMEOUT", "RECONNECT", "LinkDown"]

CONNECT_TIMEOUT = 10.0
"""Default of every engine's ``connect_timeout`` URL option (seconds): how long ``connect()``
keeps trying, retries with :data:`RECONNECT` included, before it raises :class:`LinkDown`."""


class LinkDown(TransportError):
    """The connection to the engine is lost or could not be made within the time allowed.

    Raised by sends while a link is down past its budget; consumers and subscriptions never
    see it (they wait for the link to come back and re-declare themselves).
    """
