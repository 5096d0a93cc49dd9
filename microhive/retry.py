"""Exponential backoff with jitter, for consumer retries and reconnect loops."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Backoff:
    """``initial * factor ** (attempt - 1)``, capped at ``maximum``, spread by ±``jitter``.

    Jitter keeps many consumers that failed together from retrying together.
    """

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 300.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        numbers = (self.initial, self.factor, self.maximum, self.jitter)
        if (
            not all(isinstance(n, int | float) and math.isfinite(n) for n in numbers)
            or self.initial < 0
            or self.factor < 1
            or self.maximum < 0
            or not 0 <= self.jitter <= 1
        ):
            raise ConfigurationError(
                "Backoff needs initial >= 0, factor >= 1, maximum >= 0 and 0 <= jitter <= 1"
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        exponent = min(max(attempt - 1, 0), 64)
        try:
            base = min(self.maximum, self.initial * self.factor**exponent)
        except OverflowError:
            base = self.maximum
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, min(base, self.maximum))


RECONNECT = Backoff(initial=0.05, factor=2.0, maximum=2.0, jitter=0.2)
"""Pause after an engine failed: between two connection attempts of a link, and before a
consumer worker whose engine failed under it takes the next delivery. Quick first retries,
capped at 2 s."""
