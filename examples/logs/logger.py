"""What both logger clients share: a consumer that prints its queue's messages to its file.

Apart from agents.py so that ``microhive run examples.logs.agents`` (every agent class the
module defines) does not run the base class as an agent of its own.
"""

from __future__ import annotations

from pathlib import Path

from examples.logfile import LogFile
from microhive import MicroAgent, current_message, on


def log_file(agent: MicroAgent, name: str) -> LogFile:
    return LogFile(Path(agent.settings.get("dir", ".")) / name)


class Logger(MicroAgent):
    """A client that prints the messages of its queue to its log file."""

    file_name = ""

    @on("pre_start")
    def setup(self) -> None:
        self.out = log_file(self, self.file_name)

    @on("post_stop")
    def close(self) -> None:
        self.out.close()

    def print(self, n: int, text: str) -> None:
        message = current_message()
        assert message is not None  # always set inside a consumer
        level = message.headers.get("x-routing-key", "log.?").removeprefix("log.")
        self.out.write(level, f"n={n} id={message.id} {text}")
