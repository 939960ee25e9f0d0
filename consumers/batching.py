"""One shard's records -> batches -> invocations -> checkpoints, with AWS Lambda's semantics.

A ``ShardProcessor`` is the engine of a function consumer for one shard
(reference §3.1, §3.3). The worker feeds it the shard's records (``put``,
then ``end_of_shard`` at a closed shard's end) and gives it four callables:
``invoke`` (one ``Invocation`` -> an ``InvokeOutcome``), ``checkpoint`` (False
when the lease was lost), ``send_failure`` (the ``OnFailure`` record of a
discarded batch) and ``record_size`` (a record's bytes in the event JSON).
``run`` does the work. Nothing here knows about the wire or the event shape.

**Lanes.** ``ParallelizationFactor`` N gives N *lanes*; each lane has at
most one batch in flight and takes its records in sequence order. A key
stays in one lane while any of its records is unfinished there (queued or in
flight); a key with nothing unfinished goes to the lane that holds the
fewest records. So a partition key is never in two in-flight batches, its
records are invoked in order, a lane whose batch is retried blocks only the
keys in it (AWS: the poller works on up to N keys at once), and the lanes
share the work evenly (hashing keys to lanes left the busiest of ten lanes
~20 % above the mean with 1,000 keys, which capped factor 10 near 8x).
With N = 1 the lane is the shard, blocked in order.

**Batching.** A lane's batch leaves when it has ``batch_size`` records, when
the next record would take the event past ``max_payload_bytes`` (the
records' ``record_size`` plus ``EVENT_OVERHEAD_BYTES``), when the batching
window, counted from the moment the lane had a record and was free (the
next window starts when the previous invocation ends), runs out, or at once
when the shard has ended. With no window a batch leaves with what is there.
A record whose event alone is too large is discarded (``PayloadTooLarge``).
Records for which ``keep`` says False never reach a lane: they count as
processed.

**Errors** (reference §3.3). A function error, an unacceptable answer
(``consumers.progress.judge``) or a partial failure retries the batch from
its first failed record, in order, the lane blocked, until it succeeds, or
``max_retry_attempts`` retries failed (``RetryAttemptsExhausted``), or its
oldest record is older than ``max_record_age_s`` (``RecordAgeExceeded``):
then the batch is *discarded*: ``send_failure`` is awaited, and only then do
its records count as finished. Counted retries wait ``RETRY_BACKOFF``
between attempts (0.1 s doubling up to 10 s, with jitter; Lambda does not
publish its timing). With ``bisect_on_error`` a failed batch of more than one
record is split in halves, each retried in order; a partial failure splits
at the reported record. Splits are retried at once and are not retries (a
poison record is isolated in log2(batch) invocations, then retried alone).
Records already older than ``max_record_age_s`` when a batch is formed are
discarded without an invocation (Lambda: it "discards records older than
the specified age").

**Checkpoints.** Every record gets an index in a ``CompletionTracker``; the
checkpoint moves, by one task that writes the newest value whenever it is
free, to the highest sequence number below which every record is finished.
A lane far ahead never moves it past a record another lane still holds. At
the shard's end, once every record is finished, it writes ``SHARD_END`` and
``run`` returns. A ``checkpoint`` that answers False (the lease is lost)
cancels everything at once: no invocation starts after it.

**Tumbling windows** (``tumbling_window_s`` > 0, one lane; the rules are in
``consumers.windows``). Batches hold one window's records; each invocation
gets the state the previous one of the window returned (``{}`` first). The
invocation that carries a window's last records once it is over, or an extra
one with none, is the final one (``is_final``); only after it do the
window's records count as finished.

**Bounds.** ``put`` waits while the shard holds ``max_buffered_records``
(at least ``batch_size``) records not yet behind the checkpoint.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from operator import itemgetter
from typing import NamedTuple

import trio

from broker.client import Backoff, Record
from broker.model import SHARD_END

from .batch_types import (
    EVENT_OVERHEAD_BYTES,
    PAYLOAD_TOO_LARGE,
    RECORD_AGE_EXCEEDED,
    RETRY_ATTEMPTS_EXHAUSTED,
    BatchingConfig,
    FailureInfo,
    Invocation,
)
from .progress import (
    BATCH_SIZE_BUCKETS,
    DURATION_BUCKETS,
    CompletionTracker,
    Histogram,
    HistogramSnapshot,
    InvokeOutcome,
    ProcessorStatistics,
    Verdict,
    judge,
)
from .windows import MAX_STATE_BYTES, PutSide, TumblingWindows, Window

#: How long counted retries wait (Lambda's own timing is unpublished).
RETRY_BACKOFF = Backoff(initial_s=0.1, max_s=10.0)
DEFAULT_MAX_BUFFERED_RECORDS = 10_000


class _Entry(NamedTuple):
    position: int  # in the CompletionTracker
    record: Record
    size: int


# Field getters in C: NamedTuple attribute access costs a Python-level lookup per record.
_POSITION = itemgetter(0)
_RECORD = itemgetter(1)
_SEQUENCE = itemgetter(0)  # of a Record


class _Lane:
    """One lane's queue, in sequence order, and the event that says it changed."""

    __slots__ = ("bytes", "changed", "held", "queue")

    def __init__(self) -> None:
        self.queue: deque[_Entry] = deque()
        self.bytes = 0
        #: Records given to the lane and not finished yet (queued or in flight).
        self.held = 0
        self.changed = trio.Event()

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class _Segment:
    """Records being delivered together, and how often they were invoked and retried."""

    __slots__ = ("entries", "invokes", "retries")

    def __init__(self, entries: list[_Entry], invokes: int = 0, retries: int = 0) -> None:
        self.entries = entries
        self.invokes = invokes
        self.retries = retries


class ShardProcessor:
    """The engine for one shard (module docstring): ``put``, ``end_of_shard``, ``run``."""

    def __init__(
        self,
        config: BatchingConfig,
        *,
        shard_id: str,
        invoke: Callable[[Invocation], Awaitable[InvokeOutcome]],
        checkpoint: Callable[[str], Awaitable[bool]],
        send_failure: Callable[[FailureInfo], Awaitable[None]],
        record_size: Callable[[Record], int],
        keep: Callable[[Record], bool] | None = None,
        size_bound: Callable[[Sequence[Record]], int] | None = None,
        clock: Callable[[], float] = time.time,
        max_buffered_records: int = DEFAULT_MAX_BUFFERED_RECORDS,
    ) -> None:
        self.config = config
        self.shard_id = shard_id
        self._invoke = invoke
        self._checkpoint = checkpoint
        self._send_failure = send_failure
        self._record_size = record_size
        #: An upper bound of ``record_size`` over a ``put``'s records: when a full batch
        #: of that size fits the payload bound, no record's own size is worked out.
        self._size_bound = size_bound
        self._keep = keep
        self._clock = clock
        self._limit = max(max_buffered_records, config.batch_size)
        self._lanes = [_Lane() for _ in range(config.parallelization_factor)]
        # With several lanes, a key's lane while it has records unfinished, and how
        # many (module docstring, "Parallelization").
        self._key_lane: dict[str, int] = {}
        self._key_held: dict[str, int] = {}
        self._tracker = CompletionTracker()
        self._rng = random.Random()
        self._ended = False
        self._running = False
        self._lanes_running = 0
        self._scope: trio.CancelScope | None = None
        self._room = trio.Event()  # set (and replaced) when the tracker shrinks
        self._dirty = trio.Event()  # set (and replaced) when there is something to checkpoint
        self._written: str | None = None
        self._lease_lost = False
        self._stopped = False
        # Tumbling windows: the open one, where the last closed one ended, the put side.
        self._windows = TumblingWindows(config.tumbling_window_s or 1)
        self._waiting: Record | None = None  # the next record of a put waiting for room
        self._last_put_at = -math.inf
        # Statistics.
        self._invocations = self._errors = self._partials = self._retries = 0
        self._invoked = self._filtered = self._discarded = self._discards = 0
        self._last_batch_size = 0
        self._iterator_age_ms: float | None = None
        self._batch_sizes = Histogram(BATCH_SIZE_BUCKETS)
        self._durations = Histogram(DURATION_BUCKETS)

    @property
    def lease_lost(self) -> bool:
        """Whether ``run`` stopped because a checkpoint was refused."""
        return self._lease_lost

    # -- the reader's side ----------------------------------------------------------

    async def put(self, records: Sequence[Record]) -> None:
        """Take the shard's next records; waits while the shard holds its bound.

        After ``run`` stopped (lease lost) records are ignored: they will be
        read again by whoever holds the shard now.
        """
        if self._ended:
            raise RuntimeError(f"{self.shard_id}: put after end_of_shard")
        position = 0
        try:
            while position < len(records) and not self._stopped:
                room = self._limit - len(self._tracker)
                if room <= 0:
                    self._waiting = records[position]
                    event = self._room
                    for lane in self._lanes:
                        lane.notify()  # a window full of the buffer may have to close
                    await event.wait()
                    continue
                self._waiting = None
                chunk = records[position : position + room]
                position += len(chunk)
                self._accept(chunk)
        finally:
            self._waiting = None
            self._last_put_at = trio.current_time()

    def _accept(self, records: Sequence[Record]) -> None:
        tracker, keep, size_of = self._tracker, self._keep, self._record_size
        new = tuple.__new__  # NamedTuple's own __new__ is a Python lambda: 3x the cost
        key_lane, key_held = self._key_lane, self._key_held
        config = self.config
        fixed = 0
        if self._size_bound is not None and records and not config.tumbling_window_s:
            bound = self._size_bound(records)
            if bound * config.batch_size + EVENT_OVERHEAD_BYTES <= config.max_payload_bytes:
                # No batch of these can reach the payload bound: each record counts as
                # the largest, and no record's own size is worked out.
                fixed = bound
        lanes = self._lanes
        count = len(lanes)
        if keep is None and count == 1:
            # The common case: every record to the one lane, in order, in bulk.
            lane = lanes[0]
            first = tracker.add_many(list(map(_SEQUENCE, records)))
            if fixed:
                lane.queue.extend(
                    [new(_Entry, (first + i, r, fixed)) for i, r in enumerate(records)]
                )
                lane.bytes += fixed * len(records)
            else:
                sizes = [size_of(r) for r in records]
                lane.queue.extend(
                    [
                        new(_Entry, (first + i, r, z))
                        for i, (r, z) in enumerate(zip(records, sizes, strict=True))
                    ]
                )
                lane.bytes += sum(sizes)
            if records:
                lane.notify()
            return
        filtered = 0
        touched: set[int] = set()
        # Each lane's held count, kept here while the loop assigns keys (nothing else
        # runs meanwhile) and written back after: the least held lane is a C-level min.
        holds = [lane.held for lane in lanes]
        for record in records:
            if keep is not None and not keep(record):
                tracker.add(record.sequence_number, True)
                filtered += 1
                continue
            index = tracker.add(record.sequence_number)
            which = 0
            if count > 1:
                key = record.partition_key
                held = key_held.get(key, 0)
                if held:
                    which = key_lane[key]
                else:
                    # A key with nothing unfinished goes to the lane holding the least.
                    which = holds.index(min(holds))
                    key_lane[key] = which
                key_held[key] = held + 1
                holds[which] += 1
            size = fixed or size_of(record)
            lane = lanes[which]
            lane.queue.append(new(_Entry, (index, record, size)))
            lane.bytes += size
            touched.add(which)
        for which, lane in enumerate(lanes):
            lane.held = holds[which]
        for which in touched:
            lanes[which].notify()
        if filtered:
            self._filtered += filtered
            self._advance()

    async def end_of_shard(self) -> None:
        """No more records: ``run`` finishes them, closes a window, writes ``SHARD_END``.

        Returns at once; ``run`` returns when the end is checkpointed.
        """
        self._ended = True
        for lane in self._lanes:
            lane.notify()
        self._notify_dirty()

    # -- running --------------------------------------------------------------------

    async def run(self) -> None:
        """Process until ``SHARD_END`` is checkpointed or a checkpoint is refused.

        The callables report failures by value (``InvokeOutcome``); an exception
        from one of them ends ``run`` with it, the checkpoint left where it was.
        """
        if self._running or self._stopped:
            raise RuntimeError(f"{self.shard_id}: a processor runs once")
        self._running = True
        loop = self._window_loop if self.config.tumbling_window_s else self._lane_loop
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                self._lanes_running = len(self._lanes)
                for lane in self._lanes:
                    nursery.start_soon(self._run_lane, loop, lane)
                nursery.start_soon(self._checkpointer)
        finally:
            self._stopped = True
            self._room.set()

    async def _checkpointer(self) -> None:
        """Write the newest checkpoint whenever free; ``SHARD_END`` once everything is done."""
        tracker = self._tracker
        while True:
            event = self._dirty
            target = tracker.checkpoint
            if self._lanes_running == 0:
                assert not len(tracker), "every lane ended with records unfinished"
                target = SHARD_END
            if target is not None and target != self._written:
                if not await self._checkpoint(target):
                    self._lease_lost = True
                    assert self._scope is not None
                    self._scope.cancel()
                    return
                self._written = target
                continue
            if target == SHARD_END:
                return
            await event.wait()

    def _notify_dirty(self) -> None:
        self._dirty.set()
        self._dirty = trio.Event()

    def _advance(self) -> None:
        if self._tracker.advance():
            self._room.set()
            self._room = trio.Event()
            self._notify_dirty()

    def _finish(self, entries: Sequence[_Entry]) -> None:
        self._tracker.finish(map(_POSITION, entries))
        if len(self._lanes) > 1:
            lanes, key_lane, key_held = self._lanes, self._key_lane, self._key_held
            for entry in entries:
                key = entry.record.partition_key
                lanes[key_lane[key]].held -= 1
                held = key_held[key] - 1
                if held:
                    key_held[key] = held
                else:  # nothing of the key left anywhere: it may go to any lane next time
                    del key_held[key], key_lane[key]
        self._advance()

    async def _wait(self, lane: _Lane, deadline: float) -> None:
        """Wait for the lane to change, or the deadline. Call right after checking it."""
        with trio.move_on_at(deadline):
            await lane.changed.wait()

    async def _run_lane(self, loop: Callable[[_Lane], Awaitable[None]], lane: _Lane) -> None:
        await loop(lane)
        # Not in a finally: a lane that fails must not look finished to the checkpointer.
        self._lanes_running -= 1
        self._notify_dirty()

    async def _lane_loop(self, lane: _Lane) -> None:
        while True:
            if not lane.queue:
                if self._ended:
                    return
                await self._wait(lane, math.inf)
                continue
            await self._gather(lane, None)
            condition, entries = self._take(lane, None)
            if condition is not None:
                await self._discard(_Segment(entries), condition, None)
            elif entries:
                await self._deliver(entries, None, final=False)

    async def _gather(self, lane: _Lane, window: Window | None) -> None:
        """Wait, within the batching window, for a full batch (module docstring)."""
        window_s = self.config.batching_window_s
        if window_s <= 0:
            return
        deadline = trio.current_time() + window_s
        while not self._batch_ready(lane, window) and trio.current_time() < deadline:
            await self._wait(lane, deadline)

    def _batch_ready(self, lane: _Lane, window: Window | None) -> bool:
        config = self.config
        if self._ended or len(lane.queue) >= config.batch_size:
            return True
        if self._waiting is not None:
            # The buffer is full (``put`` waits): no record can join before the window
            # ends, and other lanes' finished records wait behind this lane's.
            return True
        if lane.bytes + self._overhead(window) > config.max_payload_bytes:
            return True
        return window is not None and self._window_over(lane)[0]

    @staticmethod
    def _overhead(window: Window | None) -> int:
        """The event's bytes beside its records: a window's state comes on top."""
        return EVENT_OVERHEAD_BYTES + (window.state_bytes if window is not None else 0)

    def _take(self, lane: _Lane, window: Window | None) -> tuple[str | None, list[_Entry]]:
        """The lane's next batch, or a run of records to discard with its condition."""
        config, queue = self.config, lane.queue
        taken: list[_Entry] = []
        condition: str | None = None
        if config.max_record_age_s >= 0:
            oldest_ms = self._clock() * 1000 - config.max_record_age_s * 1000
            while queue and queue[0].record.approximate_arrival_timestamp < oldest_ms:
                if window is not None and self._window_start(queue[0]) != window.start_ms:
                    break
                taken.append(queue.popleft())
            if taken:
                condition = RECORD_AGE_EXCEEDED
        limit = config.max_payload_bytes - self._overhead(window)
        if condition is None and queue and queue[0].size > limit:
            condition = PAYLOAD_TOO_LARGE
            taken.append(queue.popleft())
        if condition is None:
            total = 0
            while queue and len(taken) < config.batch_size:
                entry = queue[0]
                if total + entry.size > limit:
                    break
                if window is not None and self._window_start(entry) != window.start_ms:
                    break
                taken.append(queue.popleft())
                total += entry.size
        lane.bytes -= sum(entry.size for entry in taken)
        if window is not None and taken:
            window.last = taken[-1].record
            window.last_index = taken[-1].position
        return condition, taken

    # -- delivering -----------------------------------------------------------------

    async def _deliver(self, entries: list[_Entry], window: Window | None, *, final: bool) -> None:
        """Invoke until every record succeeded or was discarded (module docstring)."""
        config = self.config
        pending = deque([_Segment(entries)])
        failures = 0
        while pending:
            segment = pending[0]
            if segment.invokes and self._too_old(segment.entries):
                pending.popleft()
                await self._discard(segment, RECORD_AGE_EXCEEDED, window)
                continue
            is_final = final and len(pending) == 1
            verdict = await self._invoke_once(segment, window, is_final)
            count = len(segment.entries)
            if verdict.error_type is None:
                pending.popleft()
                failures = 0
                if window is not None:
                    window.keep_state(verdict.state)
                    window.finalized = window.finalized or is_final
                else:
                    self._finish(segment.entries)
                continue
            split = False
            if verdict.succeeded:
                done = segment.entries[: verdict.succeeded]
                if window is not None:
                    window.keep_state(verdict.state)
                else:
                    self._finish(done)
                segment.entries = segment.entries[verdict.succeeded :]
                split = config.bisect_on_error
            elif config.bisect_on_error and count > 1:
                half = (count + 1) // 2
                pending.popleft()
                pending.appendleft(
                    _Segment(segment.entries[half:], segment.invokes, segment.retries)
                )
                pending.appendleft(
                    _Segment(segment.entries[:half], segment.invokes, segment.retries)
                )
                split = True
            if split:
                continue
            segment.retries += 1
            if 0 <= config.max_retry_attempts < segment.retries:
                pending.popleft()
                await self._discard(
                    segment,
                    RETRY_ATTEMPTS_EXHAUSTED,
                    window,
                    verdict.error_type,
                    verdict.error_message,
                )
                continue
            failures += 1
            await trio.sleep(RETRY_BACKOFF.delay(failures, self._rng))

    def _too_old(self, entries: list[_Entry]) -> bool:
        max_age_s = self.config.max_record_age_s
        if max_age_s < 0 or not entries:
            return False
        oldest = min(entry.record.approximate_arrival_timestamp for entry in entries)
        return self._clock() * 1000 - oldest > max_age_s * 1000

    async def _invoke_once(
        self, segment: _Segment, window: Window | None, is_final: bool
    ) -> Verdict:
        records = list(map(_RECORD, segment.entries))
        invocation = Invocation(
            records,
            self.shard_id,
            attempt=segment.invokes + 1,
            window=None if window is None else window.bounds,
            state=None if window is None else dict(window.state),
            is_final=is_final,
            terminated_early=is_final and window is not None and window.terminated_early,
        )
        started = trio.current_time()
        outcome = await self._invoke(invocation)
        self._durations.observe(trio.current_time() - started)
        segment.invokes += 1
        self._invocations += 1
        self._retries += segment.invokes > 1
        self._invoked += len(records)
        self._last_batch_size = len(records)
        self._batch_sizes.observe(len(records))
        if records:
            self._iterator_age_ms = self._clock() * 1000 - records[-1].approximate_arrival_timestamp
        verdict = judge(
            outcome,
            list(map(_SEQUENCE, records)),
            report_item_failures=self.config.report_batch_item_failures,
            windowed=window is not None,
        )
        if verdict.error_type is not None:
            if verdict.succeeded:
                self._partials += 1
            else:
                self._errors += 1
        return verdict

    async def _discard(
        self,
        segment: _Segment,
        condition: str,
        window: Window | None,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> None:
        """Send the failure record, then (outside windows) count the records finished."""
        entries = segment.entries
        if entries:
            first, last = entries[0].record, entries[-1].record
        else:
            assert window is not None  # an empty final invocation of a window
            first, last = window.first, window.last
        await self._send_failure(
            FailureInfo(
                condition=condition,
                shard_id=self.shard_id,
                approximate_invoke_count=segment.invokes,
                start_sequence_number=first.sequence_number,
                end_sequence_number=last.sequence_number,
                approximate_arrival_of_first_record=first.approximate_arrival_timestamp,
                approximate_arrival_of_last_record=last.approximate_arrival_timestamp,
                batch_size=len(entries),
                error_type=error_type,
                error_message=error_message,
            )
        )
        self._discarded += len(entries)
        self._discards += 1
        if window is None:
            self._finish(entries)

    # -- tumbling windows -----------------------------------------------------------

    def _window_start(self, entry: _Entry) -> int:
        return self._windows.start_of(entry.record.approximate_arrival_timestamp)

    def _put_side(self) -> PutSide:
        waiting = self._waiting
        return PutSide(
            self._last_put_at, None if waiting is None else waiting.approximate_arrival_timestamp
        )

    def _window_over(self, lane: _Lane) -> tuple[bool, bool]:
        queue = lane.queue
        return self._windows.over(
            ended=self._ended,
            now_s=self._clock(),
            now=trio.current_time(),
            next_arrival_ms=queue[0].record.approximate_arrival_timestamp if queue else None,
            last_arrival_ms=queue[-1].record.approximate_arrival_timestamp if queue else None,
            put=self._put_side(),
        )

    async def _window_loop(self, lane: _Lane) -> None:
        while True:
            window, queue = self._windows.open, lane.queue
            if window is not None and window.state_bytes > MAX_STATE_BYTES:
                window.terminated_early = True  # Lambda ends a window whose state grew too big
                await self._close_window(window)
                continue
            if queue:
                start = self._window_start(queue[0])
                if window is not None and start != window.start_ms:
                    await self._close_window(window)
                    continue
                if window is None:
                    window = self._windows.open_at(start, queue[0].position, queue[0].record)
                await self._gather(lane, window)
                condition, entries = self._take(lane, window)
                over, window.terminated_early = self._window_over(lane)
                final = over and (not queue or self._window_start(queue[0]) != start)
                if condition is not None:
                    await self._discard(_Segment(entries), condition, window)
                elif entries:
                    await self._deliver(entries, window, final=final)
                if final:
                    await self._close_window(window)
                continue
            if window is not None:
                over, early = self._window_over(lane)
                if over:
                    window.terminated_early = early
                    await self._close_window(window)
                    continue
            if self._ended:
                return
            deadline = math.inf
            if window is not None:
                deadline = self._windows.quiet_deadline(
                    now_s=self._clock(), now=trio.current_time(), put=self._put_side()
                )
            await self._wait(lane, deadline)

    async def _close_window(self, window: Window) -> None:
        """The final invocation (with no records, unless one was final already), then finish."""
        if not window.finalized:
            await self._deliver([], window, final=True)
        self._tracker.finish(range(window.first_index, window.last_index + 1))
        self._windows.close()
        self._advance()

    # -- statistics -----------------------------------------------------------------

    def statistics(self) -> ProcessorStatistics:
        return ProcessorStatistics(
            invocations=self._invocations,
            function_errors=self._errors,
            partial_failures=self._partials,
            retries=self._retries,
            records_invoked=self._invoked,
            records_filtered=self._filtered,
            records_discarded=self._discarded,
            batches_discarded=self._discards,
            last_batch_size=self._last_batch_size,
            batch_sizes=self._batch_sizes.snapshot(),
            iterator_age_ms=self._iterator_age_ms,
            durations=self._durations.snapshot(),
            records_held=len(self._tracker),
            checkpoint=self._written,
            lease_lost=self._lease_lost,
        )


__all__ = [
    "EVENT_OVERHEAD_BYTES",
    "PAYLOAD_TOO_LARGE",
    "RECORD_AGE_EXCEEDED",
    "RETRY_ATTEMPTS_EXHAUSTED",
    "BatchingConfig",
    "FailureInfo",
    "HistogramSnapshot",
    "Invocation",
    "InvokeOutcome",
    "ProcessorStatistics",
    "ShardProcessor",
]
