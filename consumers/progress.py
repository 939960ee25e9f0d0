"""The pure rules of function consumers: what an invocation's answer means, how far a shard is done.

``judge`` reads one invocation's ``InvokeOutcome`` the way Lambda reads a
function's answer for Kinesis (reference §3.3) and says how many of the
batch's leading records succeeded:

* a function error (``ok`` False) fails the whole batch;
* in a tumbling window the response must be a map with ``state`` (a map, or
  null for an empty one); anything else is a function error;
* with ``ReportBatchItemFailures`` (and only then) the response may name
  failed records, ``{"batchItemFailures": [{"itemIdentifier": "<seq>"}]}``:
  the records before the lowest one named succeeded, it and the rest are
  retried. A null or missing response, a response that is not a map, a map
  without ``batchItemFailures`` and a null or empty list mean full success.
  A list that is not a list, an entry that is not a map, lacks
  ``itemIdentifier`` (a wrong key), or holds a null, empty or unknown
  sequence number fails the whole batch.

``CompletionTracker`` knows which records of a shard are finished (invoked
successfully, filtered out or discarded) and the highest sequence number
below which every record is: the only place a checkpoint may move to when
several batches of one shard are in flight at once. One byte per record in
a ``bytearray`` and ``find(0)`` keep the per-record cost to a few dozen
nanoseconds.

``Histogram`` and ``ProcessorStatistics`` are the engine's figures for the
worker's ``/metrics``.

Nothing here imports trio or reads a clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from broker.server.metrics import Histogram as MetricsHistogram


@dataclass(frozen=True, slots=True)
class InvokeOutcome:
    """What became of one invocation; the worker fills it from the target's result."""

    ok: bool
    #: The function's response (decoded JSON), if it answered.
    response: Any = None
    #: For a function error: its type and message (Lambda's ``errorType``/``errorMessage``).
    error_type: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """How one invocation went: its first ``succeeded`` records are done."""

    succeeded: int
    #: The window state the function returned (tumbling windows only).
    state: dict[str, Any] | None = None
    error_type: str | None = None
    error_message: str | None = None


#: ``error_type`` of an answer the engine could not accept (no ``state``, bad partial report).
INVALID_RESPONSE = "InvalidResponse"
#: ``error_type`` of a partial batch failure reported by the function.
PARTIAL_FAILURE = "BatchItemFailures"


def judge(
    outcome: InvokeOutcome,
    sequence_numbers: Sequence[str],
    *,
    report_item_failures: bool,
    windowed: bool,
) -> Verdict:
    """Read ``outcome`` for a batch of ``sequence_numbers`` (module docstring)."""
    count = len(sequence_numbers)
    if not outcome.ok:
        return Verdict(0, None, outcome.error_type or "FunctionError", outcome.error_message)
    response = outcome.response
    state: dict[str, Any] | None = None
    if windowed:
        if not isinstance(response, dict) or "state" not in response:
            return Verdict(
                0, None, INVALID_RESPONSE, "a tumbling-window function must return state"
            )
        raw = response["state"]
        if raw is not None and not isinstance(raw, dict):
            return Verdict(0, None, INVALID_RESPONSE, "the returned state must be a map")
        state = raw or {}
    if not report_item_failures or not isinstance(response, dict):
        return Verdict(count, state)
    failures = response.get("batchItemFailures")
    if not failures:
        return Verdict(count, state)
    lowest = _lowest_failure(failures, sequence_numbers)
    if lowest is None:
        return Verdict(
            0, None, INVALID_RESPONSE, f"batchItemFailures is malformed or unknown: {failures!r}"
        )
    return Verdict(
        lowest, state, PARTIAL_FAILURE, f"record {sequence_numbers[lowest]} reported as failed"
    )


def _lowest_failure(failures: Any, sequence_numbers: Sequence[str]) -> int | None:
    """The index of the lowest reported record; None when the report fails the whole batch."""
    if not isinstance(failures, list):
        return None
    where = {seq: index for index, seq in enumerate(sequence_numbers)}
    lowest = len(sequence_numbers)
    for entry in failures:
        if not isinstance(entry, dict):
            return None
        item = entry.get("itemIdentifier")
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        index = where.get(item) if isinstance(item, str) else None
        if index is None:
            return None
        lowest = min(lowest, index)
    return lowest


class CompletionTracker:
    """Finished records of one shard, in sequence order; ``checkpoint`` is where it may move.

    ``add`` gives each record, in sequence order, an index; ``finish`` marks
    indices finished; ``advance`` moves ``checkpoint`` to the last record of
    the finished run at the front and forgets that run. ``len`` is the
    number of records not yet behind the checkpoint: what the shard holds.
    """

    __slots__ = ("_base", "_done", "_sequence_numbers", "checkpoint")

    def __init__(self) -> None:
        self._base = 0
        self._done = bytearray()
        self._sequence_numbers: deque[str] = deque()
        #: The sequence number below which (and at which) every record is finished.
        self.checkpoint: str | None = None

    def __len__(self) -> int:
        return len(self._done)

    def add(self, sequence_number: str, finished: bool = False) -> int:
        index = self._base + len(self._done)
        self._done.append(finished)
        self._sequence_numbers.append(sequence_number)
        return index

    def add_many(self, sequence_numbers: Sequence[str]) -> int:
        """``add`` of each, unfinished, in order; the index of the first."""
        index = self._base + len(self._done)
        self._done.extend(bytes(len(sequence_numbers)))
        self._sequence_numbers.extend(sequence_numbers)
        return index

    def finish(self, indices: Iterable[int]) -> None:
        done, base = self._done, self._base
        for index in indices:
            done[index - base] = 1

    def is_finished(self, index: int) -> bool:
        offset = index - self._base
        return offset < 0 or bool(self._done[offset])

    def advance(self) -> bool:
        """Move ``checkpoint`` past the finished records at the front; True if it moved."""
        done = self._done
        count = done.find(0)
        if count == -1:
            count = len(done)
        if count == 0:
            return False
        del done[:count]
        numbers = self._sequence_numbers
        for _ in range(count - 1):
            numbers.popleft()
        self.checkpoint = numbers.popleft()
        self._base += count
        return True


#: Upper bounds of the batch size histogram (records).
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
#: Upper bounds of the invocation duration histogram (seconds).
DURATION_BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0),
)


@dataclass(frozen=True)
class HistogramSnapshot:
    #: Upper bounds; ``counts`` has one more entry, for values above the last.
    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float
    count: int


@dataclass(frozen=True)
class ProcessorStatistics:
    invocations: int
    #: Invocations that failed as a whole (function error or an answer not accepted).
    function_errors: int
    #: Invocations that failed in part (``batchItemFailures``).
    partial_failures: int
    #: Invocations of records that were invoked before.
    retries: int
    records_invoked: int
    records_filtered: int
    records_discarded: int
    batches_discarded: int
    last_batch_size: int
    batch_sizes: HistogramSnapshot
    #: IteratorAge: the last batch's last record's age when its invocation ended, ms.
    iterator_age_ms: float | None
    durations: HistogramSnapshot
    #: Records not yet behind the checkpoint; the newest checkpoint written.
    records_held: int
    checkpoint: str | None
    lease_lost: bool


class Histogram(MetricsHistogram):
    """The broker's histogram (fixed bounds), with a frozen copy for statistics."""

    __slots__ = ()

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.bounds, tuple(self.counts), self.total, self.count)
