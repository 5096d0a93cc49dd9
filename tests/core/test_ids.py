"""Message ids stay unique whatever a program does with the global ``random``."""

from __future__ import annotations

import os
import random

from microhive.envelope import new_id


def test_seeding_the_global_random_does_not_repeat_ids() -> None:
    random.seed(7)
    first = [new_id() for _ in range(3)]
    random.seed(7)
    assert not set(first) & {new_id() for _ in range(3)}


def test_a_forked_child_draws_other_ids() -> None:
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(writer, new_id().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    theirs = os.read(reader, 64).decode()
    os.close(reader)
    assert len(theirs) == 32
    assert theirs != new_id()
