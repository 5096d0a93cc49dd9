"""Running a command as a subprocess and waiting for lines of its output, with deadlines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment without MICROHIVE_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROHIVE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run(
    *args: str, timeout: float = 20, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python <args>`` in the repository root, to completion."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=environment(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Process:
    """``python <args>`` in the background; stdout and stderr are merged and collected."""

    def __init__(self, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env=environment(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 10) -> str:
        """The first output line matching ``pattern``; AssertionError at the deadline."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if regex.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not self._reader.is_alive()):
                    break
                self._changed.wait(min(left, 0.1))
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{self.output}")

    def wait(self, timeout: float) -> int:
        """The exit code; the process is killed (and the test fails) past ``timeout``."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"did not exit within {timeout} s:\n{self.output}") from None
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)
        self._reader.join(5)
