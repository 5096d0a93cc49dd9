"""``microhive run --processes``: one process per agent, restarted with backoff when it crashes.

A child that exits 0 finished on purpose and is not restarted; any other exit (a crash, a
SIGKILL) is restarted after a backoff that resets once the child has run for ``stable_after``
seconds. A child exiting with 2 (a configuration error) stops everything, as restarting cannot
help. SIGINT/SIGTERM reach every child as SIGTERM; stragglers are killed after the grace.
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

CONFIGURATION_ERROR = 2
"""The exit code of ``microhive run`` for a configuration error: never restarted."""


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
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.children = [Child(name, list(command)) for name, command in commands.items()]
        self.grace_period = grace_period
        self.backoff = backoff or Backoff(initial=0.5, factor=2.0, maximum=30.0, jitter=0.1)
        self.stable_after = stable_after
        self.stopping = asyncio.Event()
        self.env = dict(env) if env is not None else None
        self.exit_code = 0

    async def run(self) -> int:
        """Supervise until SIGINT/SIGTERM or every child finished; the exit code to use.

        0 when stopped by a signal or when every child exited 0; 2 when a child reported a
        configuration error (exit 2: restarting cannot help, so everything stops); 1 when a
        child could not be started at all.
        """
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self.stopping.set)
        watchers = [asyncio.ensure_future(self._watch(child)) for child in self.children]
        try:
            for finished in asyncio.as_completed(watchers):
                try:
                    await finished
                except Exception as exc:  # a child that cannot start: stop the others
                    log.error("cannot run a child: %s", exc)
                    self.exit_code = 1
                    self.stopping.set()
        finally:
            self.stopping.set()
            await asyncio.gather(*watchers, return_exceptions=True)
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(signum)
        return self.exit_code

    async def _watch(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not self.stopping.is_set():
            started = loop.time()
            child.process = await asyncio.create_subprocess_exec(*child.command, env=self.env)
            log.info("started %s (pid %d)", child.name, child.process.pid)
            exited = asyncio.ensure_future(child.process.wait())
            stop = asyncio.ensure_future(self.stopping.wait())
            try:
                await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                if not exited.done():
                    await self._terminate(child, exited)
            if self.stopping.is_set() and child.process.returncode is None:
                return
            code = child.process.returncode
            if code == 0:
                log.info("%s finished (exit 0)", child.name)
                return
            if self.stopping.is_set():
                log.info("%s stopped (exit %s)", child.name, code)
                return
            if code == CONFIGURATION_ERROR:
                log.error("%s has a configuration error (exit 2): stopping everything", child.name)
                self.exit_code = CONFIGURATION_ERROR
                self.stopping.set()
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
        done, _ = await asyncio.wait({exited}, timeout=self.grace_period + 5)
        if not done:
            log.error("%s did not stop within the grace period: killed", child.name)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.shield(exited)
        log.info("%s stopped (exit %s)", child.name, process.returncode)
