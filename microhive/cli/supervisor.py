"""``microhive run --processes``: one process per agent, restarted with backoff when it crashes.

A child that exits 0 finished on purpose and is not restarted; any other exit (a crash, a
SIGKILL) is restarted after a backoff that resets once the child has run for ``stable_after``
seconds. SIGINT/SIGTERM reach every child as SIGTERM; stragglers are killed after the grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..retry import Backoff

log = logging.getLogger("microhive.supervisor")


@dataclass
class Child:
    name: str
    command: Sequence[str]
    restarts: int = 0
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)


class Supervisor:
    def __init__(
        self,
        commands: Mapping[str, Sequence[str]],
        *,
        grace_period: float = 30.0,
        backoff: Backoff | None = None,
        stable_after: float = 30.0,
    ) -> None:
        self.children = [Child(name, list(command)) for name, command in commands.items()]
        self.grace_period = grace_period
        self.backoff = backoff or Backoff(initial=0.5, factor=2.0, maximum=30.0, jitter=0.1)
        self.stable_after = stable_after
        self.stopping = asyncio.Event()

    async def run(self) -> int:
        """Supervise until SIGINT/SIGTERM or every child finished; the exit code to use."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.stopping.set)
        try:
            await asyncio.gather(*(self._watch(child) for child in self.children))
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(signum)
        return 0

    async def _watch(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not self.stopping.is_set():
            started = loop.time()
            child.process = await asyncio.create_subprocess_exec(*child.command)
            log.info("started %s (pid %d)", child.name, child.process.pid)
            exited = asyncio.ensure_future(child.process.wait())
            stop = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if self.stopping.is_set():
                await self._terminate(child, exited)
                return
            code = child.process.returncode
            if code == 0:
                log.info("%s finished (exit 0)", child.name)
                return
            if loop.time() - started >= self.stable_after:
                failures = 0
            failures += 1
            child.restarts += 1
            delay = self.backoff.delay(failures)
            log.warning("%s exited with %s; restarting in %.1f s", child.name, code, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.stopping.wait()

    async def _terminate(self, child: Child, exited: asyncio.Future[int]) -> None:
        process = child.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(self.grace_period + 5):
                await exited
        except TimeoutError:
            log.error("%s did not stop within the grace period: killed", child.name)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await exited
        log.info("%s stopped (exit %s)", child.name, process.returncode)
