"""The fixed schedule of the live fan-out and latency runs, the same for shardline and its peers.

Records are due in groups: the fewest records per group that keep a producer
at or under ``MAX_REQUESTS_PER_S`` requests (3 records every 3 ms at 1,000
records/s, 500 every 2.5 ms at 200,000). Each record carries its group's due
time (``time.monotonic_ns``, shared by the processes of one machine) in its
first 8 bytes, little-endian; a record due at ``END_MARK`` ends the run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_GROUP = 500
#: Groups grow (up to MAX_GROUP records) so that a producer sends at most this many requests/s.
MAX_REQUESTS_PER_S = 400
END_MARK = -1
#: A group sent later than this after its due time counts as late.
LATE_NS = 1_000_000


@dataclass(frozen=True, slots=True)
class Schedule:
    """``groups`` groups of ``group`` records, one every ``tick_ns`` from ``start_ns``."""

    start_ns: int
    group: int
    tick_ns: int
    groups: int

    @classmethod
    def of(cls, rate: float, seconds: float, start_ns: int) -> Schedule:
        group = min(MAX_GROUP, max(1, math.ceil(rate / MAX_REQUESTS_PER_S)))
        tick_ns = round(group / rate * 1e9)
        return cls(start_ns, group, tick_ns, int(seconds * 1e9 / tick_ns))

    def keep(self, send: Callable[[int], None]) -> int:
        """Call ``send(due_ns)`` for each group at its due time; how many were late.

        Timed with ``time.sleep`` in the calling thread (tens of microseconds of
        slack), not an event loop's timers, whose epoll timeouts round up to
        whole milliseconds: the load generator's own lateness would be counted
        against the system measured. ``send`` must not wait for an answer.
        """
        late = 0
        for k in range(self.groups):
            due_ns = self.start_ns + k * self.tick_ns
            wait = due_ns - time.monotonic_ns()
            if wait > 0:
                time.sleep(wait / 1e9)
            if time.monotonic_ns() - due_ns > LATE_NS:
                late += 1
            send(due_ns)
        return late

    def report(self, late: int) -> dict[str, float | int]:
        """The schedule's figures for a producer's JSON report."""
        return {
            "start_ns": self.start_ns,
            "groups": self.groups,
            "group": self.group,
            "tick_s": self.tick_ns / 1e9,
            "late_groups": late,
        }
