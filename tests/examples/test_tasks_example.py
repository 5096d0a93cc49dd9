"""The seed's Celery sample (examples/tasks) prints what Celery's prints."""

from __future__ import annotations

import re

import pytest

from examples.tasks.celery_sample import main
from microhive.envelope import new_id


async def test_the_celery_sample_prints_what_celery_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    await main(f"memory://celery-{new_id()[:8]}")
    lines = capsys.readouterr().out.splitlines()
    answers = [line for line in lines if not re.match(r"(add|mul|xsum)\(", line)]
    assert answers[:6] == ["PENDING", "False", "2", "SUCCEEDED", "True", "2"]
    assert answers[6:9] == ["[0, 2, 4, 6, 8, 10, 12, 14, 16, 18]", "64", "90"]
    assert "something" in answers
    assert "TASK SUCCEEDED None: print_task" in answers
    assert any(re.fullmatch(r"ERROR IN TASK [0-9a-f]{32}: broken_task", a) for a in answers)
    assert "xsum([0, 2, 4, 6, 8, 10, 12, 14, 16, 18])" in lines
