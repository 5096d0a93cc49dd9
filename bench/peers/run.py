#!/usr/bin/env python
"""microhive beside FastStream, Dramatiq, Celery and microagent: same work, one table.

Every cell runs the consumer side (queue consumer, signal receiver, call responder) and the
producer side (sender, caller) as two separate processes, each in its own process group;
the cell is stopped (SIGTERM, then SIGKILL) after ``--cell-timeout`` seconds at the latest,
and whatever it created on the engine is deleted afterwards (every name carries the run's
token). Standard library only: run it with any Python; it starts microhive's sides with the
project's interpreter and the peers' sides with ``bench/peers/.venv`` (see setup.sh).

    bench/peers/run.sh                                  # all engines, 20,000 messages
    bench/peers/run.sh --engines redis --count 5000 --peers microhive,faststream
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PEERS_PYTHON = Path(os.environ.get("PEERS_PYTHON", HERE / ".venv" / "bin" / "python"))
MICROHIVE_PYTHON = Path(os.environ.get("MICROHIVE_PYTHON", ROOT / ".venv" / "bin" / "python"))
ENGINES = ("redis", "amqp", "nats")
WORKS = ("queue", "call", "signal")
PEERS = ("microhive", "faststream", "dramatiq", "celery", "microagent", "taskiq")


@dataclass(frozen=True)
class Row:
    peer: str
    engine: str
    work: str
    setting: str
    missing: str = ""  # why this peer cannot do it (the row prints n/a)


def _rows() -> list[Row]:
    rows: list[Row] = []
    for engine in ENGINES:
        no_nats = "no NATS broker" if engine == "nats" else ""
        rows += [
            Row("microhive", engine, "queue", "default"),
            Row("microhive", engine, "queue", "c64"),
            Row("faststream", engine, "queue", "default"),
            Row("faststream", engine, "queue", "closest"),
            Row("dramatiq", engine, "queue", "default", no_nats),
        ]
        if engine == "amqp":
            rows.append(Row("dramatiq", engine, "queue", "closest"))
        rows += [
            Row("celery", engine, "queue", "default", no_nats),
            Row("celery", engine, "queue", "closest", no_nats),
            Row("microagent", engine, "queue", "default", no_nats),
            Row("taskiq", engine, "queue", "default"),
        ]
        if engine != "amqp":  # taskiq's AMQP broker is already the closest
            rows.append(Row("taskiq", engine, "queue", "closest"))
        for work in ("call", "signal"):
            mine = "no signal bus on AMQP" if engine == "amqp" else no_nats
            rows += [
                Row("microhive", engine, work, "default"),
                Row("faststream", engine, work, "default"),
            ]
            if engine == "amqp" and work == "signal":
                rows.append(Row("faststream", engine, work, "closest"))
            rows.append(Row("microagent", engine, work, "default", mine))
    return rows


@dataclass
class Side:
    """One side process: its output lines, read by a thread so that waits can time out."""

    process: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("EXIT")

    def expect(self, deadline: float) -> tuple[str, str]:
        """The next READY / RESULT / NA / EXIT line before ``deadline`` (monotonic)."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "TIMEOUT", ""
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                return "TIMEOUT", ""
            word, _, rest = line.partition(" ")
            if word in ("READY", "RESULT", "NA", "EXIT"):
                return word, rest

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        with contextlib.suppress(
            ProcessLookupError, PermissionError
        ):  # children that outlived their parent (prefork pools, ...)
            os.killpg(self.process.pid, signal.SIGKILL)


def _start(row: Row, role: str, token: str, count: int, log: Path) -> Side:
    if row.peer == "microhive":
        python = MICROHIVE_PYTHON
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
    else:
        python = PEERS_PYTHON
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [str(python), str(HERE / f"side_{row.peer}.py"), role, row.engine, row.work]
    command += [row.setting, token, str(count)]
    with log.open("a") as errors:
        errors.write(f"$ {' '.join(command)}\n")
        errors.flush()
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=HERE,
            start_new_session=True,
        )
    return Side(process)


def run_cell(row: Row, count: int, token: str, timeout: float, log: Path) -> dict[str, Any]:
    """Measure one cell: the figure, or {"na": reason}."""
    calls = row.work == "call"
    deadline = time.monotonic() + timeout
    sides = [_start(row, "consumer", token, count, log)]
    try:
        word, rest = sides[0].expect(min(deadline, time.monotonic() + 90))
        if word != "READY":
            return {"na": rest or _why(word, "consumer", log)}
        sides.append(_start(row, "producer", token, count, log))
        word, rest = sides[1].expect(deadline)
        if word != "RESULT":
            return {"na": rest or _why(word, "producer", log)}
        produced = json.loads(rest)
        if calls:
            times = sorted(produced["times"])
            return {
                "p50": times[len(times) // 2] / 1000,
                "p99": times[min(len(times) - 1, round(0.99 * (len(times) - 1)))] / 1000,
            }
        word, rest = sides[0].expect(deadline)
        if word != "RESULT":
            return {"na": rest or _why(word, "consumer", log)}
        consumed = json.loads(rest)
        seconds = consumed["end"] - produced["start"]
        if consumed["count"] == 0 or seconds <= 0:
            return {"na": "nothing arrived"}
        sent = count / max(produced["sent"] - produced["start"], 1e-9)
        return {"rate": consumed["count"] / seconds, "count": consumed["count"], "sent": sent}
    finally:
        for side in reversed(sides):
            side.stop()


def _worse(outcome: dict[str, Any]) -> float:
    """Sort key: the best outcome first (n/a last)."""
    if "na" in outcome:
        return float("inf")
    return outcome["p50"] if "p50" in outcome else -outcome["rate"]


def _why(word: str, role: str, log: Path) -> str:
    if word == "TIMEOUT":
        return f"{role} timed out"
    tail = [line for line in log.read_text().splitlines() if line.strip()][-1:]
    return f"{role} failed: {tail[0][:90] if tail else 'no output'}"


def cleanup(engines: list[str], token: str, log: Path) -> None:
    """Delete every queue, stream, exchange and key whose name contains ``token``."""
    for engine in engines:
        with log.open("a") as errors:
            try:
                subprocess.run(
                    [str(PEERS_PYTHON), str(HERE / "cleanup.py"), engine, token],
                    stdout=errors,
                    stderr=errors,
                    timeout=120,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                errors.write(f"cleanup of {engine} timed out\n")


def _figure(row: Row, outcome: dict[str, Any], count: int) -> str:
    if "na" in outcome:
        return f"n/a ({outcome['na']})"
    if row.work == "call":
        return f"{outcome['p50']:,.0f} / {outcome['p99']:,.0f} µs"
    lost = count - outcome["count"]
    return f"{outcome['rate']:,.0f} msg/s" + (f" ({lost:,} lost)" if lost > 0 else "")


def _ratio(row: Row, mine: dict[str, Any] | None, theirs: dict[str, Any]) -> str:
    if mine is None or "na" in mine or "na" in theirs:
        return ""
    if row.work == "call":
        return f"{theirs['p50'] / mine['p50']:.2f} / {theirs['p99'] / mine['p99']:.2f}"
    return f"{mine['rate'] / theirs['rate']:.2f}"


def table(rows: list[Row], outcomes: dict[Row, dict[str, Any]], count: int) -> str:
    lines = [
        ("engine", "work", "peer (setting)", "figure", "producer", "vs mh default", "vs mh c64"),
    ]
    for row in rows:
        outcome = outcomes[row]
        reference = {
            setting: outcomes.get(Row("microhive", row.engine, row.work, setting))
            for setting in ("default", "c64")
        }
        if row.work != "queue":
            reference["c64"] = reference["default"]
        lines.append(
            (
                row.engine,
                row.work,
                f"{row.peer} ({row.setting})",
                _figure(row, outcome, count),
                f"{outcome['sent']:,.0f}/s" if "sent" in outcome else "",
                "" if row.peer == "microhive" else _ratio(row, reference["default"], outcome),
                "" if row.peer == "microhive" else _ratio(row, reference["c64"], outcome),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for index, line in enumerate(lines):
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        out.append("| " + " | ".join(cells) + " |")
        if index == 0:
            out.append("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--works", default=",".join(WORKS))
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--count", type=int, default=20_000, help="messages and signals per cell")
    parser.add_argument("--calls", type=int, default=2_000, help="timed calls per cell")
    parser.add_argument("--cell-timeout", type=float, default=150.0, help="seconds per cell")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell, the best is kept")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    engines, works, peers = (args.engines.split(","), args.works.split(","), args.peers.split(","))
    for name, chosen, known in (("engine", engines, ENGINES), ("work", works, WORKS)):
        if unknown := set(chosen) - set(known):
            parser.error(f"unknown {name}: {', '.join(sorted(unknown))}")
    for python in {PEERS_PYTHON, MICROHIVE_PYTHON}:
        if not python.exists():
            parser.error(f"{python} is missing (bench/peers/setup.sh, or set *_PYTHON)")

    run = f"mhpeers{secrets.token_hex(3)}"
    log = Path(os.environ.get("PEERS_LOG", f"/tmp/{run}.log"))
    rows = [r for r in _rows() if r.engine in engines and r.work in works and r.peer in peers]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{stamp}; count={args.count:,}, calls={args.calls:,}; load {_load()}; log {log}")
    outcomes: dict[Row, dict[str, Any]] = {}
    try:
        for index, row in enumerate(rows):
            if row.missing:
                outcomes[row] = {"na": row.missing}
                continue
            count = args.calls if row.work == "call" else args.count
            started = time.monotonic()
            tries = [
                run_cell(row, count, f"{run}_{index}_{k}", args.cell_timeout, log)
                for k in range(args.repeat)
            ]
            outcomes[row] = min(tries, key=_worse)
            print(
                f"  {row.engine:5} {row.work:6} {row.peer} ({row.setting}): "
                f"{_figure(row, outcomes[row], count)}  [{time.monotonic() - started:.0f} s]",
                flush=True,
            )
    finally:
        cleanup(engines, run, log)
    print(f"load after: {_load()}")
    print()
    print(table(rows, outcomes, args.count))
    print()
    print(
        "vs mh = how many times microhive's figure is better (throughput: microhive / peer; "
        "latency p50 / p99: peer / microhive)."
    )
    if args.json:
        document = [{**r.__dict__, **outcomes[r]} for r in rows]
        args.json.write_text(json.dumps(document, indent=2))
    return 0


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return shutil.which("uptime") or "?"


if __name__ == "__main__":
    sys.exit(main())
