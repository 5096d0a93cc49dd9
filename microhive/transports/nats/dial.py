"""One attempt at opening a nats-py connection: its settings, and which failures are final.

:meth:`~.link.Link.open` repeats attempts until ``connect_timeout`` is spent; a refused
login or an untrusted certificate is final (the server answered: trying again cannot help).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any, Protocol

from .options import NatsOptions


class Failed(Exception):
    """One connection attempt failed; another may succeed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Final(Exception):
    """The server answered and refused (credentials, certificate), or the TLS files are bad."""

    def __init__(self, what: str, reason: BaseException | str) -> None:
        super().__init__(str(reason))
        self.what = what
        self.reason = reason


class Witness(Protocol):
    """Where nats-py's error callback left the last error it reported (its text is better
    than the exception ``connect()`` ends with)."""

    @property
    def last_error(self) -> str: ...


def settings(
    options: NatsOptions, role: str, remaining: float, callbacks: dict[str, Any]
) -> dict[str, Any]:
    """nats-py's ``connect()`` arguments for one attempt: no reconnects of its own yet, each
    server tried twice, each try getting a share of ``connect_timeout``."""
    share = max(0.5, options.connect_timeout / (2 * len(options.servers)))
    kwargs: dict[str, Any] = {
        "servers": list(options.servers),
        "name": options.name or f"microhive {role}",
        "connect_timeout": max(0.05, min(share, remaining)),
        "reconnect_time_wait": 0.1,
        "max_reconnect_attempts": 1,
        "allow_reconnect": False,
        "ping_interval": options.ping_interval,
        "max_outstanding_pings": 3,
        "pending_size": 8 * 1024 * 1024,
        "dont_randomize": True,
        **callbacks,
    }
    if options.tls:
        try:
            kwargs["tls"] = options.ssl_context()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise Final("cannot load the TLS files for", exc) from None
        if options.tls_hostname:
            kwargs["tls_hostname"] = options.tls_hostname
    if options.user is not None:
        kwargs["user"] = options.user
        kwargs["password"] = options.password
    if options.token is not None:
        kwargs["token"] = options.token
    if options.creds:
        kwargs["user_credentials"] = options.creds
    if options.nkey:
        kwargs["nkeys_seed"] = options.nkey
    return kwargs


async def attempt(client: Any, kwargs: dict[str, Any], remaining: float, witness: Witness) -> None:
    """``client.connect(**kwargs)`` within ``remaining`` seconds; :class:`Failed` or
    :class:`Final` (the client closed) when it did not connect."""
    try:  # nats-py can hang after some TLS failures: a deadline of our own
        async with asyncio.timeout(max(0.0, remaining)):
            await client.connect(**kwargs)
    except asyncio.CancelledError:
        await abandon(client)
        raise
    except Exception as exc:
        await abandon(client)
        reason = witness.last_error or str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError) and not witness.last_error:
            reason = "no answer"
        if is_auth(reason):
            raise Final("cannot authenticate to", reason) from None
        if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY" in reason:
            raise Final("cannot connect to", reason) from None
        raise Failed(reason) from None


async def abandon(client: Any) -> None:
    """Close a client that never connected (nats-py's close can hang after a TLS failure)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await client.close()


def is_auth(text: str) -> bool:
    lowered = text.lower()
    return "authoriz" in lowered or "authentic" in lowered or "permission" in lowered
