"""Which agent instances are alive: the heartbeats they send (microhive/agent/heartbeat.py).

An instance is *alive* while its beats come, *gone* once it missed
:data:`~microhive.agent.heartbeat.MISSED` intervals or said it is stopping. Gone instances
stay listed for a while, so a crash is seen rather than silently forgotten.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..agent.heartbeat import MISSED

FORGET_AFTER = 600.0
"""Seconds a gone instance stays listed."""


@dataclass
class Instance:
    """The latest beat of one agent instance."""

    beat: dict[str, Any]
    last_seen: float
    beats: int = 1
    stopped: bool = False

    @property
    def interval(self) -> float:
        value = self.beat.get("interval")
        return float(value) if isinstance(value, int | float) and value > 0 else 5.0

    def alive(self, now: float) -> bool:
        return not self.stopped and now - self.last_seen <= self.interval * MISSED


@dataclass
class Agents:
    """Instances by id, fed with heartbeat payloads."""

    instances: dict[str, Instance] = field(default_factory=dict)

    def seen(self, payload: Any, now: float | None = None) -> Instance | None:
        """Record one beat; a payload that is not a heartbeat is ignored (None)."""
        if not isinstance(payload, dict) or not isinstance(payload.get("instance"), str):
            return None
        now = time.time() if now is None else now
        found = self.instances.get(payload["instance"])
        if found is None:
            found = self.instances[payload["instance"]] = Instance(payload, now)
        else:
            found.beat, found.last_seen = payload, now
            found.beats += 1
        found.stopped = payload.get("state") == "stopping"
        return found

    def snapshot(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every instance, alive first, then by name; forgets those gone long ago."""
        now = time.time() if now is None else now
        for key, instance in list(self.instances.items()):
            if now - instance.last_seen > FORGET_AFTER:
                del self.instances[key]
        rows = []
        for instance in self.instances.values():
            beat = instance.beat
            rows.append(
                {
                    "instance": beat["instance"],
                    "agent": beat.get("agent"),
                    "host": beat.get("host"),
                    "pid": beat.get("pid"),
                    "alive": instance.alive(now),
                    "state": "alive" if instance.alive(now) else "gone",
                    "stopped": instance.stopped,
                    "last_seen": instance.last_seen,
                    "started_at": beat.get("started_at"),
                    "interval": instance.interval,
                    "beats": instance.beats,
                    "handlers": beat.get("handlers") or {},
                }
            )
        rows.sort(key=lambda row: (not row["alive"], str(row["agent"]), row["instance"]))
        return rows

    def queues(self) -> list[str]:
        """The queues the instances consume (so the console watches them unasked)."""
        return _names(self, "consumers", "queue")

    def signals(self) -> list[str]:
        """The signals the instances receive."""
        names: list[str] = []
        for instance in self.instances.values():
            for receiver in (instance.beat.get("handlers") or {}).get("receivers", []):
                names += [name for name in receiver.get("signals", []) if isinstance(name, str)]
        return list(dict.fromkeys(names))


def _names(agents: Agents, part: str, key: str) -> list[str]:
    names: list[str] = []
    for instance in agents.instances.values():
        for item in (instance.beat.get("handlers") or {}).get(part, []):
            if "retries" in item and isinstance(item.get(key), str):  # a queue's own consumer
                names.append(item[key])
    return list(dict.fromkeys(names))
