"""Bulk dead-letter work from the shell, in steps: progress as it goes, and a Ctrl-C that
loses nothing.

A requeue or purge of thousands of letters runs as steps of ``--step`` letters, each one a
whole call of the broker's own requeue/purge (publish first, then remove). The first Ctrl-C
(SIGINT) lets the step under way finish and stops before the next: every letter is then
either requeued (or purged) once or still a dead letter — none lost, none twice — and the
command says how many were done and exits 130. A second Ctrl-C stops at once; the step under
way is then as a crash leaves it (a few letters requeued and still dead: duplicates at most,
per engine in docs/guarantees.md).

Progress goes to stderr, so stdout keeps the one result line: a rich bar on a terminal,
a plain line per step when piped, nothing with ``--json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

STEP = 500
"""Letters per step by default: one Redis script run, a few AMQP/NATS round trips each."""

Step = Callable[[int], Awaitable[int]]
"""Do up to ``n`` letters; return how many were done (fewer: none are left)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    done: int
    total: int
    interrupted: bool


class Interrupt:
    """SIGINT on the running loop: the first asks to stop between steps, the second cancels
    ``task`` at once."""

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.asked = asyncio.Event()
        self.task = task

    def __call__(self) -> None:
        if self.asked.is_set():
            self.task.cancel()
        self.asked.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, self)
        except (NotImplementedError, RuntimeError):  # no signals here (Windows, a thread)
            yield
            return
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGINT)


class Report:
    """Progress after each step: a bar on a terminal, a plain line when piped, or nothing."""

    def __init__(self, verb: str, queue: str, quiet: bool) -> None:
        self.verb, self.queue, self.quiet = verb, queue, quiet
        self.console = Console(stderr=True, highlight=False)
        self.progress: Progress | None = None
        self.task_id: TaskID | None = None

    def __enter__(self) -> Report:
        if not self.quiet and self.console.is_terminal:
            self.progress = Progress(
                TextColumn(f"{self.verb} dead letters of {self.queue}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
        return self

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.progress is not None:
            if self.task_id is None:
                self.task_id = self.progress.add_task("", total=total)
            self.progress.update(self.task_id, completed=done, total=total)
        else:
            click.echo(f"{self.verb} {done}/{total}", err=True)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


async def in_steps(
    step: Step, total: int, size: int, report: Callable[[int, int], None]
) -> Outcome:
    """Run ``step`` until ``total`` letters are done, none are left, or Ctrl-C."""
    current = asyncio.current_task()
    assert current is not None
    interrupt = Interrupt(current)
    done = 0
    with interrupt.installed():
        report(done, total)
        while done < total and not interrupt.asked.is_set():
            took = await step(min(size, total - done))
            done += took
            report(done, total)
            if took == 0:
                break
    return Outcome(done, total, interrupt.asked.is_set() and done < total)
