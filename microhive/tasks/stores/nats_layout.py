"""Where the NATS result store puts things: bucket, keys, subjects, headers, expiry; and
making the bucket and the index stream.

- Bucket ``<prefix>_jobs`` (stream ``KV_<prefix>_jobs``): key ``job.<id>`` holds the record's
  JSON, ``join.<group>`` a chord's finished members (a JSON list). History 1.
- Stream ``<prefix>_jobs_index``: one message per created job on ``<prefix>.jobs.index.<queue>``
  (``[created_at, id]``), at most ``index_limit`` per queue: what :meth:`jobs` lists.
- An id or name that is not a plain token (letters, digits, ``-``, ``_``, ``=``; not starting
  with ``=``) is written ``=`` + unpadded base64url, so any caller-given job id fits a key.

Expiry: nats-server before 2.11 has no per-message TTL, only the bucket's ``max_age``. Each
write therefore carries ``Microhive-Expires`` (Unix time, the writer's clock) and readers treat
a record past it as absent; the bucket's ``max_age`` removes it for good later. With a ``ttl``
longer than ``max_age`` a record lives ``max_age`` (docs/results.md).
"""

from __future__ import annotations

import base64
import contextlib
import re
import time
from collections.abc import Mapping
from typing import Any

from ...errors import ConfigurationError
from ...transports.nats.options import NatsOptions

EXPIRES = "Microhive-Expires"
KV_OPERATION = "KV-Operation"
EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
MSG_ID = "Nats-Msg-Id"
REVISION = "Nats-Sequence"  # of a direct get's answer
WRONG_LAST_SEQUENCE = (10071, 10164)
STREAM_IN_USE = 10058

_PLAIN = re.compile(r"[-_=A-Za-z0-9]{1,200}")


def token(name: str) -> str:
    """``name`` as one key or subject token, reversibly."""
    if _PLAIN.fullmatch(name) and not name.startswith("="):
        return name
    return "=" + base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


class Layout:
    """The names of one store (from the NATS URL's ``prefix``)."""

    def __init__(self, options: NatsOptions) -> None:
        self.bucket = f"{options.prefix}_jobs"
        self.stream = f"KV_{self.bucket}"
        self.index_stream = f"{options.prefix}_jobs_index"
        self._index = f"{options.prefix}.jobs.index"
        self._kv = f"$KV.{self.bucket}"

    def job(self, job_id: str) -> str:
        return f"{self._kv}.job.{token(job_id)}"

    def join(self, group: str) -> str:
        return f"{self._kv}.join.{token(group)}"

    def index(self, queue: str | None) -> str:
        return f"{self._index}.>" if queue is None else f"{self._index}.{token(queue)}"


def expires_header(ttl: float) -> str:
    return f"{time.time() + ttl:.3f}"


def live(headers: Mapping[str, str] | None) -> bool:
    """Not deleted and not past its ``Microhive-Expires``."""
    if not headers:
        return True
    if headers.get(KV_OPERATION) in ("DEL", "PURGE"):
        return False
    expires = headers.get(EXPIRES)
    try:
        return expires is None or float(expires) > time.time()
    except ValueError:
        return True


async def declare(js: Any, options: NatsOptions, max_age: float, index_limit: int) -> None:
    """The bucket and the index stream; ones that exist (an operator's limits) are used."""
    from nats.js import api
    from nats.js.errors import BadRequestError

    names = Layout(options)
    storage = api.StorageType(options.storage)
    with contextlib.suppress(BadRequestError):  # STREAM_IN_USE: it is there already
        await js.create_key_value(
            bucket=names.bucket,
            history=1,
            ttl=max_age,
            storage=storage,
            replicas=options.replicas,
            direct=True,
            description="microhive job records",
        )
    found = await js.stream_info(names.stream)
    if not found.config.allow_direct:
        raise ConfigurationError(
            f"NATS URL {options.safe_url!r}: bucket {names.bucket!r} exists without direct "
            "gets (allow_direct); enable them or use another prefix"
        )
    index = api.StreamConfig(
        name=names.index_stream,
        subjects=[names.index(None)],
        description="microhive job ids by queue, for listing",
        max_msgs_per_subject=index_limit,
        max_age=max_age,
        storage=storage,
        num_replicas=options.replicas,
    )
    with contextlib.suppress(BadRequestError):
        await js.add_stream(index)
