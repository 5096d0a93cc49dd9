"""Credentials on RabbitMQ, through the shared scenarios (tests/scenarios/security.py; an
unreachable server: test_recovery.py): a user of a private node's own, a wrong password."""

from __future__ import annotations

import pytest

from ..scenarios import Server, security
from ..scenarios.security import SECRET, WRONG
from .server import RabbitNode


@pytest.mark.slow
async def test_a_password_works_and_a_wrong_one_is_never_shown(
    private_rabbit: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """A refusal (ACCESS_REFUSED) is final: no retries until connect_timeout."""
    assert isinstance(private_rabbit, RabbitNode)
    private_rabbit.add_user("app", SECRET)
    await security.a_password_works_and_a_wrong_one_is_never_shown(
        f"amqp://app:{SECRET}@127.0.0.1:{private_rabbit.port}/",
        f"amqp://app:{WRONG}@127.0.0.1:{private_rabbit.port}/",
        r"refused the connection",
        caplog,
    )


def test_a_password_in_the_query_string_is_refused_without_echoing_it() -> None:
    security.a_password_in_the_query_string_is_refused_without_echoing_it(
        f"amqp://127.0.0.1:5672/?password={WRONG}"
    )
