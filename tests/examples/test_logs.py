"""The logs example (seed 003, practice 1) end to end: ``python -m examples.logs`` as a real
process on ``memory://`` and on RabbitMQ. The logger subscribed to ``log.*`` writes every
message the generator sent, exactly once; the one subscribed to ``log.error`` only the errors.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from microhive.envelope import new_id
from microhive.testing import eventually

from ..amqp import server as amqp_server
from ..cli.helpers import Process, run

LINE = re.compile(r"^\S+ \S+ (?P<level>\w+) +n=(?P<n>\d+) id=(?P<id>\S+) (?P<text>.*)$")
COUNT = 40
WAIT = 60.0


def read(path: Path) -> list[tuple[str, str, str]]:
    """(level, id, text) of every line; a line of another shape fails the test."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        match = LINE.match(line)
        assert match is not None, f"unexpected line in {path.name}: {line!r}"
        found.append((match["level"], match["id"], match["text"]))
    return found


@pytest.mark.parametrize("engine", ["memory", "amqp"])
async def test_one_logger_gets_everything_the_other_only_errors(
    engine: str, tmp_path: Path
) -> None:
    if engine == "memory":
        url = "memory://"
    else:
        amqp_server.require_amqp()
        url = amqp_server.contract_url(f"logs{new_id()[:8]}")
    process = Process(
        "-m", "examples.logs", "--url", url, "--dir", str(tmp_path),
        "--count", str(COUNT), "--batch", "10", "--seed", "5",
    )  # fmt: skip
    sent_log, all_log, errors_log = (tmp_path / n for n in ("sent.log", "all.log", "errors.log"))
    try:

        def done() -> bool:
            sent = read(sent_log)
            errors = [line for line in sent if line[0] == "error"]
            return (
                len(sent) == COUNT
                and len(read(all_log)) >= COUNT
                and len(read(errors_log)) >= len(errors)
            )

        try:
            await eventually(done, WAIT, interval=0.1)
        except TimeoutError:
            raise AssertionError(f"not within {WAIT} s:\n{process.output}") from None
        process.popen.send_signal(signal.SIGTERM)
        assert process.wait(WAIT) == 0, process.output
    finally:
        process.kill()

    sent = read(sent_log)
    assert {level for level, _, _ in sent} == {"info", "error"}
    assert sorted(read(all_log), key=sent.index) == sent  # each once, as sent
    assert sorted(read(errors_log), key=sent.index) == [s for s in sent if s[0] == "error"]


@pytest.mark.parametrize("example", ["examples.calc", "examples.logs"])
@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "nats://user:secret@127.0.0.1:4222"])
def test_on_an_engine_without_exchanges_the_examples_refuse_at_once(example: str, url: str) -> None:
    """Redis and NATS have no routing capability: a clear error before anything runs."""
    done = run("-m", example, "--url", url, "--duration", "5")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "has no exchanges (no 'routing' capability)" in done.stderr
    assert "secret" not in done.stderr
