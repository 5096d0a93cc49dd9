"""Capability flags: what a transport can do, so callers and tests can check instead of guess."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Flags a transport declares; the contract suite checks that missing ones are refused clearly.

    out_of_process: other processes (and machines) can reach the same bus or broker.
    durable: queued messages survive a restart of the engine.
    delayed_delivery: ``send(..., delay=...)`` and retry backoff are supported.
    dead_letter: failed messages are parked with a reason rather than dropped.
    replay: a queue's history can be read again without consuming it.
    routing: queues can be bound to exchanges with routing keys.
    partitions: messages with the same key keep their order among themselves.
    """

    out_of_process: bool = False
    durable: bool = False
    delayed_delivery: bool = True
    dead_letter: bool = True
    replay: bool = False
    routing: bool = False
    partitions: bool = False
