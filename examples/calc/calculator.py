"""What every operation's consumer shares: the operations, checking operands, the log file.

Apart from agents.py so that ``microhive run examples.calc.agents`` (every agent class the
module defines) does not run the base class as an agent of its own.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable
from typing import Any

from examples.logfile import LogFile
from microhive import MicroAgent, Reject, current_message, on

OPERATIONS: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "add": ("+", operator.add),
    "sub": ("-", operator.sub),
    "mul": ("*", operator.mul),
    "div": ("/", operator.truediv),
}
"""Operation (queue name, and the last word of the routing key) → its symbol and function."""


def log_file(agent: MicroAgent) -> LogFile:
    return LogFile(agent.settings.get("log", "calc.log"))


def operands(a: Any, b: Any) -> str:
    return f"a={json.dumps(a)} b={json.dumps(b)}"


def is_number(value: Any) -> bool:
    """JSON numbers only: ``True`` is an int to Python, but not an operand here."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def number_in(text: str) -> int | float | None:
    """``"7"`` → 7, ``"2.5"`` → 2.5; anything else (``"seven"``, ``"nan"``) → None."""
    for parse in (int, float):
        try:
            value = parse(text)
        except ValueError:
            continue
        return value if is_number(value) else None
    return None


class Calculator(MicroAgent):
    """What every operation's consumer does; the subclasses say which queue they consume."""

    operation = ""

    @on("pre_start")
    def setup(self) -> None:
        self.out = log_file(self)
        self.strings = bool(self.settings.get("strings", False))

    @on("post_stop")
    def close(self) -> None:
        self.out.close()

    def operand(self, name: str, value: Any) -> int | float:
        if is_number(value):
            return value  # type: ignore[no-any-return]
        if self.strings and isinstance(value, str) and (number := number_in(value)) is not None:
            return number
        raise Reject(f"bad operand: {name}={json.dumps(value)} is not a number")

    def solve(self, n: int, a: Any, b: Any) -> None:
        """Log the result, or reject the task: it goes to the queue's dead letters at once
        (retrying cannot make it succeed), with the reason."""
        symbol, function = OPERATIONS[self.operation]
        message = current_message()
        where = f"n={json.dumps(n)} id={message.id if message else '?'}"
        try:
            a, b = self.operand("a", a), self.operand("b", b)
            try:
                result = function(a, b)
            except ZeroDivisionError:
                raise Reject("division by zero") from None
            except OverflowError:  # 10**400 / 3: a huge integer from another producer
                raise Reject("result too large for a float") from None
        except Reject as exc:
            self.out.write("rejected", f"{where} calc.{self.operation}: {exc.reason}")
            raise
        self.out.write("result", f"{where} {a} {symbol} {b} = {result!r}")
