"""Wrong arguments are refused at the sender with an error that says what is wrong."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import pytest

from microhive import MAX_DELAY, Catalog, Namespace, PayloadError, Queue, Signal
from microhive.testing import run_agents

from ..cli.helpers import REPO, environment

SIGNALS = Namespace([Signal("ping", ["n"])], kind="signal")
QUEUES = Namespace([Queue("jobs")], kind="queue")


@pytest.mark.parametrize("timeout", [0, -1, -0.5, math.inf, math.nan, "1", None, True])
async def test_a_call_needs_a_positive_finite_timeout(timeout: Any) -> None:
    async with run_agents(catalog=Catalog(SIGNALS, QUEUES)) as hive:
        with pytest.raises(PayloadError, match="timeout must be a number of seconds > 0"):
            await hive.bus.ping.call("me", n=1, timeout=timeout)
        with pytest.raises(PayloadError, match="timeout must be a number of seconds > 0"):
            await hive.bus.ping.gather("me", n=1, timeout=timeout)


@pytest.mark.parametrize("sender", [None, 1, b"me", ["me"]])
async def test_a_sender_must_be_a_string(sender: Any) -> None:
    async with run_agents(catalog=Catalog(SIGNALS, QUEUES)) as hive:
        with pytest.raises(PayloadError, match="sender must be a string"):
            await hive.bus.send("ping", sender, n=1)
        with pytest.raises(PayloadError, match="sender must be a string"):
            await hive.bus.call("ping", sender, n=1, timeout=1)
        with pytest.raises(PayloadError, match="sender must be a string"):
            await hive.broker.send("jobs", {"n": 1}, sender=sender)
        assert await hive.broker.jobs.length() == 0


@pytest.mark.parametrize("delay", [MAX_DELAY + 1, 1e12, math.inf])
async def test_a_delay_beyond_the_maximum_is_refused(delay: float) -> None:
    async with run_agents(catalog=Catalog(SIGNALS, QUEUES)) as hive:
        with pytest.raises(PayloadError, match="delay"):
            await hive.broker.jobs.send({"n": 1}, delay=delay)
        assert await hive.broker.jobs.length() == 0
        await hive.broker.jobs.send({"n": 1}, delay=MAX_DELAY)
        assert await hive.broker.jobs.length() == 1


def test_a_url_whose_extra_is_missing_says_which_extra_to_install() -> None:
    """With aiormq unimportable (as without microhive[amqp]): one line, no traceback."""
    code = (
        "import sys; sys.modules['aiormq'] = None\n"
        "from microhive.cli.main import main\n"
        "sys.argv = ['microhive', 'run', 'examples.social.agents:PostAgent', "
        "'--transport', 'amqp://guest:secret@127.0.0.1/']\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 'microhive[amqp]'" in lines[0]
    assert "secret" not in result.stderr
