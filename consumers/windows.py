"""Tumbling windows of function consumers: which window a record is in, and when one is over.

Lambda's tumbling windows for Kinesis (reference §3.3) group a shard's
records by arrival time; the function gets a ``state`` that it returns and is
given back at the next invocation of the same window, and the last
invocation of a window is flagged final. The engine
(``consumers.batching``) drives the invocations; the rules live here, pure:
the caller passes what happened and the time.

* A record belongs to the window ``[k*size, (k+1)*size)`` (epoch
  milliseconds) that holds its arrival time, or to the window open at the
  time if that is later, or to the one after the last closed window: a late
  record never reopens a closed window nor goes back to an earlier one.
* A window is **over** when a record of a later window is there; at the
  shard's end; when the reader waits for room and nothing of the window is
  left to invoke (the buffer is full of the window's records, held until its
  final invocation, so it could never finish: it ends early, as Lambda ends
  a window whose state grew too big); or when the wall clock is
  ``WINDOW_GRACE_S`` past the window's end and nothing was put for as long.
  The last condition keeps a window whole while a backlog is read (records
  keep coming, each one possibly of the window) and still closes it on an
  idle stream.
* It ended **early** (``isWindowTerminatedEarly``) when the shard's end came
  before the window's end time, when the buffer was full, or when its state
  grew past ``MAX_STATE_BYTES`` (Lambda's 1 MB). The state's JSON counts
  against the event's payload bound.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from broker.client import Record

#: A window is over this long after its end when nothing was put meanwhile.
WINDOW_GRACE_S = 1.0
#: A window whose state's JSON grows past this ends early (Lambda: 1 MB per shard).
MAX_STATE_BYTES = 1024 * 1024


class Window:
    """The open window: bounds (epoch ms), state, and the span of records it took."""

    __slots__ = (
        "end_ms",
        "finalized",
        "first",
        "first_index",
        "last",
        "last_index",
        "start_ms",
        "state",
        "state_bytes",
        "terminated_early",
    )

    def __init__(self, start_ms: int, end_ms: int, index: int, record: Record) -> None:
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.state: dict[str, Any] = {}
        #: The state's size in the event JSON, counted against the payload bound.
        self.state_bytes = 2
        #: The first and last record taken (for a failure record of an empty final invocation).
        self.first = self.last = record
        #: The tracker indices of the first and last record taken.
        self.first_index = self.last_index = index
        #: Whether a final invocation succeeded.
        self.finalized = False
        self.terminated_early = False

    def keep_state(self, state: dict[str, Any] | None) -> None:
        """The state the function returned, for the window's next invocation."""
        self.state = state or {}
        self.state_bytes = len(json.dumps(self.state))

    @property
    def bounds(self) -> tuple[float, float]:
        """Start and end, epoch seconds."""
        return self.start_ms / 1000, self.end_ms / 1000


@dataclass(frozen=True, slots=True)
class PutSide:
    """What the reader's side of the engine is doing, for ``over``."""

    #: Trio time of the last ``put``'s end (``-inf`` before any).
    last_put_at: float
    #: Arrival time (ms) of the next record of a put waiting for room, if one waits.
    waiting_arrival_ms: int | None


class TumblingWindows:
    """The windows of one shard: the open one and where the last closed one ended."""

    __slots__ = ("floor_ms", "open", "size_ms")

    def __init__(self, size_s: int) -> None:
        self.size_ms = size_s * 1000
        self.open: Window | None = None
        self.floor_ms = 0

    def start_of(self, arrival_ms: int) -> int:
        """The start of the window a record that arrived at ``arrival_ms`` belongs to."""
        start = arrival_ms - arrival_ms % self.size_ms
        window = self.open
        return max(start, window.start_ms if window is not None else self.floor_ms)

    def open_at(self, start_ms: int, index: int, record: Record) -> Window:
        assert self.open is None, "a window is open already"
        window = self.open = Window(start_ms, start_ms + self.size_ms, index, record)
        return window

    def close(self) -> Window:
        window = self.open
        assert window is not None, "no window is open"
        self.open = None
        self.floor_ms = window.end_ms
        return window

    def over(
        self,
        *,
        ended: bool,
        now_s: float,
        now: float,
        next_arrival_ms: int | None,
        last_arrival_ms: int | None,
        put: PutSide,
    ) -> tuple[bool, bool]:
        """Whether the open window is over, and whether early (module docstring).

        ``now_s`` is the wall clock, ``now`` trio time; ``next_arrival_ms`` and
        ``last_arrival_ms`` are the first and last records queued for invocation.
        """
        window = self.open
        assert window is not None, "no window is open"
        end_s = window.end_ms / 1000
        if last_arrival_ms is not None and self.start_of(last_arrival_ms) != window.start_ms:
            return True, False
        if ended:
            return True, now_s < end_s
        waiting = put.waiting_arrival_ms
        if waiting is not None:
            if next_arrival_ms is not None:
                return False, False
            return True, self.start_of(waiting) == window.start_ms
        quiet = now - put.last_put_at >= WINDOW_GRACE_S
        return quiet and now_s >= end_s + WINDOW_GRACE_S, False

    def quiet_deadline(self, *, now_s: float, now: float, put: PutSide) -> float:
        """The trio time at which ``over`` may turn true by the clocks alone."""
        window = self.open
        assert window is not None, "no window is open"
        by_clock = window.end_ms / 1000 + WINDOW_GRACE_S - now_s
        by_puts = put.last_put_at + WINDOW_GRACE_S - now
        return now + max(by_clock, by_puts, 0.0) + 1e-3
