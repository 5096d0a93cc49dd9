"""``python -m examples.social [options]``: every agent of the example in this process.

The same as::

    microhive run --transport memory:// --catalog examples/social/signals.json \\
        examples.social.agents:SourceAgent ... examples.social.agents:StatsAgent [options]

Extra options (``--duration 20``, ``--log-level DEBUG``, ``--config file.toml``) are passed on.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from microhive.cli.main import main

CATALOG_FILE = Path(__file__).resolve().parent / "signals.json"
AGENTS = ("SourceAgent", "UserAgent", "PostAgent", "MentionAgent", "EmailAgent", "StatsAgent")
MODULE = f"{__package__ or 'examples.social'}.agents"


def command(argv: Sequence[str]) -> list[str]:
    """The ``microhive`` arguments that run the example, with ``argv`` appended."""
    return [
        "run",
        "--transport",
        "memory://",
        "--catalog",
        str(CATALOG_FILE),
        *(f"{MODULE}:{agent}" for agent in AGENTS),
        *argv,
    ]


if __name__ == "__main__":
    # standalone mode: click reports usage errors itself and exits with the command's code
    main(args=command(sys.argv[1:]), prog_name="python -m examples.social")
