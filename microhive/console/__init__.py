"""The live web console: agents alive by their heartbeats, queues with length and rates
over time, dead letters to requeue or purge, signals flowing (docs/operations.md, Console).

Needs the ``console`` extra (Starlette, sse-starlette, uvicorn).
"""

from .app import Console, console_app

__all__ = ["Console", "console_app"]
