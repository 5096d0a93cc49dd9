"""TLS (``rediss://``) and ACL users, through the shared credential scenarios
(tests/scenarios/security.py; an unreachable server: tests/scenarios/recovery.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .. import engines
from ..scenarios import security
from ..scenarios.security import SECRET, WRONG

# an ACL user limited to its own keys and channels, without CLIENT UNBLOCK (@dangerous)
USER = f"app on >{SECRET} ~acl:* &acl:* +@all -@dangerous"
REFUSED = r"authenticate|WRONGPASS|invalid"


@pytest.fixture
def acl_redis(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = engines.RedisServer(tmp_path / "redis", users=["default off", USER])
    server.start()
    yield server
    server.stop()


async def test_acl_user_works_and_a_wrong_password_is_never_shown(
    acl_redis: engines.RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    await security.a_password_works_and_a_wrong_one_is_never_shown(
        f"redis://app:{SECRET}@127.0.0.1:{acl_redis.port}/0?prefix=acl:&block=0.2",
        f"redis://app:{WRONG}@127.0.0.1:{acl_redis.port}/0?prefix=acl:",
        REFUSED,
        caplog,
    )


def test_a_password_in_the_query_string_is_refused_without_echoing_it() -> None:
    security.a_password_in_the_query_string_is_refused_without_echoing_it(
        f"redis://127.0.0.1:6379/0?password={WRONG}"
    )


async def test_tls_with_an_acl_user(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    certificates = engines.make_certificates(tmp_path / "tls")
    server = engines.RedisServer(tmp_path / "redis", users=["default off", USER], tls=certificates)
    try:
        server.start()
    except RuntimeError as exc:
        if "tls" in str(exc).lower() and not engines.in_ci():
            pytest.skip(f"this redis-server has no TLS support: {exc}")
        raise
    try:
        ca = certificates["ca"]
        await security.tls_with_a_password(
            f"rediss://app:{SECRET}@127.0.0.1:{server.port}/0?prefix=acl:&ssl_ca_certs={ca}",
            f"rediss://app:{WRONG}@127.0.0.1:{server.port}/0?prefix=acl:&ssl_ca_certs={ca}",
            f"redis://app:{SECRET}@127.0.0.1:{server.port}/0",  # no TLS handshake: refused
            REFUSED,
            caplog,
        )
    finally:
        server.stop()
