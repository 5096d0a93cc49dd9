"""Heartbeats: a running agent says, every few seconds, that it is alive and what it does.

Each agent instance with a bus sends the built-in signal ``microhive.heartbeat`` at start,
then every ``interval`` seconds (5 by default; ``MicroAgent(heartbeat=None)`` or
``microhive run --heartbeat 0`` turns it off), and once more with ``state: "stopping"`` when
it stops. The payload carries the agent's name, instance id, host, pid, the interval, and
its receivers, consumers, schedules (with their next fire times) and hooks, as
``microhive agents`` prints them. ``microhive console`` listens to it: an instance is alive
while its beats come, gone after three intervals without one.

A heartbeat is infrastructure, not the program's traffic: it goes to the bus directly, past
the middleware, so metrics and traces count only the program's own signals. A failing beat
(the bus is down) is logged once and never stops the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from ..declarations import Signal
from ..envelope import Envelope, Kind
from .inventory import describe

if TYPE_CHECKING:
    from .agent import MicroAgent

HEARTBEAT_SIGNAL = "microhive.heartbeat"
HEARTBEAT_ARGS = (
    "agent", "instance", "host", "pid", "state", "interval", "started_at", "handlers"
)  # fmt: skip
DEFAULT_INTERVAL = 5.0
"""Seconds between two beats of one agent instance."""
MISSED = 3
"""Beats an instance may miss before the console counts it gone."""


def heartbeat_signal() -> Signal:
    """The declaration of ``microhive.heartbeat`` (a program that declares the name with
    another shape gets an error naming both places)."""
    return Signal(HEARTBEAT_SIGNAL, HEARTBEAT_ARGS)


def beat(agent: MicroAgent, state: str, started_at: float, interval: float) -> dict[str, Any]:
    """One heartbeat's payload."""
    now = datetime.datetime.now(datetime.UTC)
    return {
        "agent": agent.name,
        "instance": agent.instance_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "state": state,
        "interval": interval,
        "started_at": started_at,
        "handlers": describe(type(agent), now, started_at),
    }


async def send_beat(agent: MicroAgent, state: str, started_at: float, interval: float) -> None:
    """One beat, unless the bus was closed (a beat must not open it again)."""
    bus = agent.bus.transport
    if not bus.connected:
        return
    payload = beat(agent, state, started_at, interval)
    await bus._publish_envelope(Envelope(Kind.SIGNAL, HEARTBEAT_SIGNAL, payload, agent.instance_id))


async def heartbeat_loop(agent: MicroAgent, interval: float) -> None:
    """Beat until cancelled (the agent stops), then say ``stopping`` once."""
    heartbeat_signal()
    started_at = time.time()
    failing = False
    try:
        while True:
            try:
                await send_beat(agent, "running", started_at, interval)
                if failing:
                    agent.log.info("heartbeat: sent again")
                failing = False
            except Exception as exc:  # the bus is down: it reconnects by itself
                if not failing:
                    agent.log.warning("heartbeat not sent (will retry): %s", exc)
                failing = True
            await asyncio.sleep(interval)
    except asyncio.CancelledError:
        # the last word; without it the console finds the instance gone by missed beats
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await send_beat(agent, "stopping", started_at, interval)
        raise
