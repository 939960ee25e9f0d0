"""``Backoff``: how long to wait between failed attempts, shared by every retrying client.

The subscribers (``consumers.subscriber``) and the ``Producer`` both retry
with it; it lives here because ``broker`` never imports ``consumers``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits between failed attempts: exponential, with equal or full jitter.

    Attempt ``n`` (from 1) has the step ``min(max_s, initial_s * multiplier **
    (n - 1))``. With equal jitter (the default) it waits between half and all
    of the step: the fixed half makes the waits grow for sure (a takeover
    window of 5 s is outwaited after a few attempts), the random half spreads
    subscribers that failed together. With ``full_jitter`` it waits anywhere
    between 0 and the step: callers that fail together because they share one
    limit (producers throttled by the same shard) spread out the most that way
    and retry soonest on average. ``max_attempts`` consecutive failures raise
    the last error; ``None`` retries forever.
    """

    initial_s: float = 0.2
    max_s: float = 10.0
    multiplier: float = 2.0
    max_attempts: int | None = None
    full_jitter: bool = False

    def step(self, attempt: int) -> float:
        """The upper bound of attempt ``attempt``'s wait."""
        return min(self.max_s, self.initial_s * self.multiplier ** (attempt - 1))

    def delay(self, attempt: int, rng: random.Random) -> float:
        step = self.step(attempt)
        if self.full_jitter:
            return rng.uniform(0, step)
        return step / 2 + rng.uniform(0, step / 2)
