"""The ``--processes`` supervisor, with plain Python scripts as children."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from microhive import Backoff
from microhive.cli.supervisor import Supervisor

from .helpers import Process

NO_JITTER = Backoff(initial=0.2, factor=2.0, maximum=5.0, jitter=0.0)


def script(tmp_path: Path, name: str, body: str) -> list[str]:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def crashing_twice(tmp_path: Path) -> list[str]:
    """Records each start time in starts.txt; exits 1 on the first two starts, then 0."""
    starts = tmp_path / "starts.txt"
    return script(
        tmp_path,
        "crash",
        f"""
        import sys, time
        with open({str(starts)!r}, "a") as f:
            f.write(f"{{time.monotonic()}}\\n")
        with open({str(starts)!r}) as f:
            count = len(f.read().split())
        sys.exit(1 if count <= 2 else 0)
        """,
    )


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds; TimeoutError at the deadline."""
    async with asyncio.timeout(timeout):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


def starts(tmp_path: Path) -> list[float]:
    return [float(x) for x in (tmp_path / "starts.txt").read_text().split()]


async def test_crashing_child_is_restarted_with_backoff(tmp_path: Path) -> None:
    supervisor = Supervisor({"crash": crashing_twice(tmp_path)}, backoff=NO_JITTER)
    async with asyncio.timeout(20):
        assert await supervisor.run() == 0  # returns once the child exited 0
    child = supervisor.children[0]
    assert child.restarts == 2
    assert child.process is not None and child.process.returncode == 0
    times = starts(tmp_path)
    assert len(times) == 3
    first_gap, second_gap = times[1] - times[0], times[2] - times[1]
    assert first_gap >= 0.2  # backoff 0.2 s, then 0.4 s
    assert second_gap >= 0.4
    assert second_gap > first_gap


async def test_child_that_exits_0_is_not_restarted(tmp_path: Path) -> None:
    marker = tmp_path / "runs.txt"
    command = script(
        tmp_path, "done", f"open({str(marker)!r}, 'a').write('run\\n')\nraise SystemExit(0)\n"
    )
    crash = crashing_twice(tmp_path)
    supervisor = Supervisor({"done": command, "crash": crash}, backoff=NO_JITTER)
    async with asyncio.timeout(20):
        assert await supervisor.run() == 0
    done, crashed = supervisor.children
    assert done.restarts == 0
    assert marker.read_text() == "run\n"
    assert crashed.restarts == 2  # the other child is still supervised meanwhile


async def test_stopping_during_backoff_does_not_restart(tmp_path: Path) -> None:
    always = script(tmp_path, "always", "raise SystemExit(3)\n")
    slow = Backoff(initial=3600.0, factor=1.0, maximum=3600.0, jitter=0.0)
    supervisor = Supervisor({"always": always}, backoff=slow)
    task = asyncio.ensure_future(supervisor.run())
    child = supervisor.children[0]
    # crashed once, now waiting an hour before the restart: stopping must not wait for it
    await eventually(lambda: child.restarts >= 1, timeout=10)
    supervisor.stopping.set()
    async with asyncio.timeout(60):  # a guard against hanging, far below the hour
        assert await task == 0
    assert child.restarts == 1


SUPERVISED = """
import asyncio, logging, sys
import pytest

from microhive import Backoff
from microhive.cli.supervisor import Supervisor

logging.basicConfig(level=logging.INFO, stream=sys.stdout)
children = {name: [sys.executable, path] for name, path in zip(sys.argv[1::2], sys.argv[2::2])}
supervisor = Supervisor(children, grace_period=0, backoff=Backoff(initial=0.2, jitter=0))
sys.exit(asyncio.run(supervisor.run()))
"""

POLITE_CHILD = """
import os, signal, sys, time
def stop(signum, frame):
    print("child {name} got SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print(f"child {name} ready pid={{os.getpid()}}", flush=True)
while True:
    time.sleep(0.05)
"""

STUBBORN_CHILD = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(f"child {name} ready pid={{os.getpid()}}", flush=True)
while True:
    time.sleep(0.05)
"""


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_sigterm_stops_children_cleanly(tmp_path: Path) -> None:
    supervisor_file = tmp_path / "supervise.py"
    supervisor_file.write_text(SUPERVISED)
    args = []
    for name in ("one", "two"):
        child = tmp_path / f"{name}.py"
        child.write_text(POLITE_CHILD.format(name=name))
        args += [name, str(child)]
    process = Process(str(supervisor_file), *args)
    try:
        pids = [
            int(process.wait_for_line(rf"child {name} ready").rsplit("=", 1)[1])
            for name in ("one", "two")
        ]
        process.popen.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0, process.output
    finally:
        process.kill()
    output = process.output
    for name in ("one", "two"):
        assert f"child {name} got SIGTERM" in output
        assert f"{name} stopped (exit 0)" in output
    assert all(gone(pid) for pid in pids)
    assert "restarting" not in output
    assert "Traceback" not in output


def test_child_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    supervisor_file = tmp_path / "supervise.py"
    supervisor_file.write_text(SUPERVISED)
    child = tmp_path / "stubborn.py"
    child.write_text(STUBBORN_CHILD.format(name="stubborn"))
    process = Process(str(supervisor_file), "stubborn", str(child))
    try:
        pid = int(process.wait_for_line(r"child stubborn ready").rsplit("=", 1)[1])
        process.popen.send_signal(signal.SIGTERM)
        # the supervisor waits grace_period (0 here) + 5 s before it kills
        assert process.wait(timeout=10) == 0, process.output
    finally:
        process.kill()
    assert "stubborn did not stop within the grace period: killed" in process.output
    assert f"stubborn stopped (exit {-signal.SIGKILL})" in process.output
    assert gone(pid)


async def test_child_that_cannot_start_leaves_no_other_child_running(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    long = script(
        tmp_path, "long", f"import time\nopen({str(ready)!r}, 'w').close()\ntime.sleep(20)\n"
    )
    missing = [str(tmp_path / "no-such-program")]
    supervisor = Supervisor({"long": long, "missing": missing}, grace_period=0, backoff=NO_JITTER)
    task = asyncio.ensure_future(supervisor.run())
    try:
        async with asyncio.timeout(10):
            code = await task
        assert code == 1, "a child that cannot start is a failure of the whole run"
        process = supervisor.children[0].process
        if process is not None:
            assert process.returncode is not None, "'long' still runs after the supervisor ended"
    finally:
        supervisor.stopping.set()  # lets a leftover watcher terminate its child
        process = supervisor.children[0].process
        if process is not None and process.returncode is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await process.wait()
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()


async def test_configuration_error_stops_everything_without_restart(tmp_path: Path) -> None:
    bad = script(tmp_path, "bad", "import sys\nsys.exit(2)\n")
    long = script(tmp_path, "long2", "import time\ntime.sleep(20)\n")
    supervisor = Supervisor({"bad": bad, "long": long}, grace_period=1, backoff=NO_JITTER)
    async with asyncio.timeout(10):
        code = await supervisor.run()
    assert code == 2
    assert supervisor.children[0].restarts == 0
    other = supervisor.children[1].process
    assert other is not None and other.returncode is not None
