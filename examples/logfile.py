"""A log file the examples' agents write their results to, one timestamped line per event.

Each line is written whole in append mode, so agents in one process, or in several processes
on one machine, can share a file without interleaving their lines.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TextIO


class LogFile:
    """``<time> <kind> <text>`` lines; ``kind`` is padded so the file reads as columns."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = self.path.open("a", encoding="utf-8", buffering=1)

    def write(self, kind: str, text: str) -> None:
        now = datetime.now().isoformat(sep=" ", timespec="milliseconds")
        self._file.write(f"{now} {kind:<8} {text}\n")

    def close(self) -> None:
        self._file.close()
