"""Users and passwords, tokens and TLS, through the shared credential scenarios
(tests/scenarios/security.py; an unreachable server: tests/scenarios/recovery.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from microhive import QueueBroker, TransportError

from .. import engines
from ..scenarios import security
from ..scenarios.security import SECRET, WRONG

REFUSED = r"authenticate|Authorization"


async def test_user_and_password_work_and_a_wrong_password_is_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A refusal is final: no retries until connect_timeout."""
    with engines.NatsServer(tmp_path / "nats", users={"app": SECRET}) as server:
        await security.a_password_works_and_a_wrong_one_is_never_shown(
            f"nats://app:{SECRET}@127.0.0.1:{server.port}?prefix=auth",
            f"nats://app:{WRONG}@127.0.0.1:{server.port}",
            REFUSED,
            caplog,
        )


async def test_a_token_works_and_a_wrong_one_is_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with engines.NatsServer(tmp_path / "nats", token=SECRET) as server:
        await security.a_password_works_and_a_wrong_one_is_never_shown(
            f"nats://{SECRET}@127.0.0.1:{server.port}",
            f"nats://{WRONG}@127.0.0.1:{server.port}",
            REFUSED,
            caplog,
        )


def test_a_password_in_the_query_string_is_refused_without_echoing_it() -> None:
    security.a_password_in_the_query_string_is_refused_without_echoing_it(
        f"nats://127.0.0.1:4222?password={WRONG}"
    )


async def test_tls_with_a_password(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    certificates = engines.make_certificates(tmp_path / "tls")
    ca = certificates["ca"]
    with engines.NatsServer(tmp_path / "nats", users={"app": SECRET}, tls=certificates) as server:
        await security.tls_with_a_password(
            f"tls://app:{SECRET}@127.0.0.1:{server.port}?tls_ca={ca}",
            f"tls://app:{WRONG}@127.0.0.1:{server.port}?tls_ca={ca}",
            f"tls://app:{SECRET}@127.0.0.1:{server.port}",  # the certificate is unknown
            REFUSED,
            caplog,
        )


async def test_missing_tls_files_are_a_clear_error() -> None:
    broker = QueueBroker.from_url(f"tls://app:{WRONG}@127.0.0.1:4222?tls_ca=/nonexistent/ca.pem")
    with pytest.raises(TransportError, match="cannot load the TLS files") as caught:
        await broker.connect()
    assert WRONG not in str(caught.value)
