"""CPU time per task: of the measuring process tree and of the engines' servers (stdlib only).

On a machine with two cores, tasks per second is bounded by what every process spends on a
task, so the benchmarks print that split next to the rate: the client's side (this process
and every process it started: workers, prefork children) and each local engine server
(``redis-server``, RabbitMQ's ``beam.smp``). Read from ``/proc`` (Linux); elsewhere the
columns stay empty.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
ENGINES = {"redis": "redis-server", "amqp": "beam.smp"}
SERVERS = {"memory": (), "redis": ("redis",), "amqp": ("amqp", "redis")}
"""The servers a tasks run on each engine uses: on RabbitMQ the results are kept in Redis."""


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of ``pid``, or None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _processes() -> dict[int, tuple[int, float]]:
    found = {}
    for entry in PROC.iterdir() if PROC.is_dir() else ():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            found[int(entry.name)] = stat
    return found


def _named(name: str) -> list[int]:
    pids = []
    for entry in PROC.iterdir() if PROC.is_dir() else ():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def snapshot(engines: tuple[str, ...] = ()) -> dict[str, float]:
    """CPU seconds so far: ``client`` (this process and its live descendants) and each of
    ``engines`` (by :data:`ENGINES` name) found running on this machine."""
    table = _processes()
    mine = {os.getpid()}
    grew = True
    while grew:  # descendants: children of anything already in
        grew = False
        for pid, (parent, _) in table.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                grew = True
    out = {"client": sum(table[pid][1] for pid in mine if pid in table)}
    for engine in engines:
        pids = _named(ENGINES[engine])
        if pids:
            out[engine] = sum(table[pid][1] for pid in pids if pid in table)
    return out


def per_task(before: dict[str, float], after: dict[str, float], tasks: int) -> dict[str, float]:
    """``cpu_us_<part>``: microseconds of CPU per task between two snapshots."""
    return {
        f"cpu_us_{part}": (after[part] - before[part]) * 1e6 / tasks
        for part in after
        if part in before
    }
