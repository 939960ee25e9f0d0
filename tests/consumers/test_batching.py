"""``ShardProcessor``: Lambda's batching, retry, checkpoint and window rules for one shard.

Every test feeds a processor records and gives it scripted callables: an
``invoke`` that fails on chosen records, reports partial failures or sleeps,
a ``checkpoint`` and a ``send_failure`` that write into one ordered log, so
"the failure record comes before the checkpoint passes the batch" is a
question about positions in that log. The tests run on trio's
``autojump_clock`` and the processor's wall clock is ``BASE`` + trio time, so
batching windows, backoffs, record ages and tumbling windows take no real
time. The property test runs each example in its own ``trio.run`` with a
``MockClock``.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.client import Record
from broker.errors import InvalidParameterValueError
from consumers.batching import (
    EVENT_OVERHEAD_BYTES,
    PAYLOAD_TOO_LARGE,
    RECORD_AGE_EXCEEDED,
    RETRY_ATTEMPTS_EXHAUSTED,
    BatchingConfig,
    FailureInfo,
    Invocation,
    InvokeOutcome,
    ShardProcessor,
)
from consumers.progress import CompletionTracker, judge

SHARD = "shardId-000000000000"
#: The wall clock at trio time 0: a multiple of 60 s, so minute windows start at t = 0, 60, ...
BASE = 1_700_000_040.0
LIMIT_S = 100_000
OK = InvokeOutcome(ok=True)
Handler = Callable[[Invocation], Awaitable[InvokeOutcome]]


def wall() -> float:
    return BASE + trio.current_time()


def seq(i: int) -> str:
    return str(10**20 + i)


def index_of(record: Record) -> int:
    return int(record.sequence_number) - 10**20


def make(
    first: int, count: int, *, key: str | Callable[[int], str] = "k", at: float | None = None
) -> list[Record]:
    """Records ``first`` .. ``first + count - 1``, arrived at wall time ``at`` (default: now)."""
    arrival = int(((BASE + trio.current_time()) if at is None else at) * 1000)
    return [
        Record(seq(i), arrival, b"x" * 10, key(i) if callable(key) else key)
        for i in range(first, first + count)
    ]


def numbers(records: Sequence[Record]) -> list[int]:
    return [index_of(r) for r in records]


def fail(message: str = "boom") -> InvokeOutcome:
    return InvokeOutcome(ok=False, error_type="Error", error_message=message)


async def succeed(invocation: Invocation) -> InvokeOutcome:
    return OK


@dataclass
class Harness:
    """A processor and the ordered log of what it did: invocations, failures, checkpoints."""

    config: BatchingConfig
    handler: Handler = succeed
    keep: Callable[[Record], bool] | None = None
    max_buffered_records: int = 10_000
    #: Answers of ``checkpoint``, in order; True once they run out.
    answers: list[bool] = field(default_factory=list)
    log: list[tuple[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.changed = trio.Event()
        self.processor = ShardProcessor(
            self.config,
            shard_id=SHARD,
            invoke=self._invoke,
            checkpoint=self._checkpoint,
            send_failure=self._send_failure,
            record_size=lambda record: len(record.data) + 90,
            keep=self.keep,
            clock=wall,
            max_buffered_records=self.max_buffered_records,
        )

    async def _invoke(self, invocation: Invocation) -> InvokeOutcome:
        self.log.append(("invoke", invocation))
        outcome = await self.handler(invocation)
        self.log.append(("outcome", outcome))
        return outcome

    async def _checkpoint(self, sequence_number: str) -> bool:
        answer = self.answers.pop(0) if self.answers else True
        self.log.append(("checkpoint", sequence_number if answer else False))
        self.changed.set()
        self.changed = trio.Event()
        return answer

    async def _send_failure(self, info: FailureInfo) -> None:
        self.log.append(("failure", info))

    def entries(self, kind: str) -> list[Any]:
        return [value for what, value in self.log if what == kind]

    @property
    def invocations(self) -> list[Invocation]:
        return self.entries("invoke")

    @property
    def checkpoints(self) -> list[str]:
        return self.entries("checkpoint")

    @property
    def failures(self) -> list[FailureInfo]:
        return self.entries("failure")

    def batches(self) -> list[list[int]]:
        return [numbers(i.records) for i in self.invocations]

    def position(self, kind: str, test: Callable[[Any], bool]) -> int:
        return next(i for i, (what, value) in enumerate(self.log) if what == kind and test(value))

    async def wait_checkpoint(self, sequence_number: str) -> None:
        with trio.fail_after(LIMIT_S):
            while sequence_number not in self.checkpoints:
                await self.changed.wait()

    async def feed(self, *puts: list[Record]) -> None:
        """Put each list, end the shard and run until ``SHARD_END`` is checkpointed."""
        with trio.fail_after(LIMIT_S):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.processor.run)
                for records in puts:
                    await self.processor.put(records)
                await self.processor.end_of_shard()
        assert self.checkpoints[-1] == "SHARD_END"
        assert_monotonic(self.checkpoints)


def assert_monotonic(checkpoints: list[str]) -> None:
    values = [int(c) for c in checkpoints if c not in ("SHARD_END", False)]
    assert values == sorted(values) and len(set(values)) == len(values)


def failing_on(poison: set[int], *, times: int | None = None) -> Handler:
    """A handler that fails any batch holding a poison record (its first ``times`` tries)."""
    tries: dict[int, int] = {}

    async def handler(invocation: Invocation) -> InvokeOutcome:
        hit = [i for i in numbers(invocation.records) if i in poison]
        for i in hit:
            tries[i] = tries.get(i, 0) + 1
        if hit and (times is None or any(tries[i] <= times for i in hit)):
            return fail(f"poison {hit}")
        return OK

    return handler


# -- configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "parameter"),
    [
        ({"batch_size": 0}, "BatchSize"),
        ({"batch_size": 10_001}, "BatchSize"),
        ({"batching_window_s": 301}, "MaximumBatchingWindowInSeconds"),
        ({"parallelization_factor": 11}, "ParallelizationFactor"),
        ({"max_retry_attempts": -2}, "MaximumRetryAttempts"),
        ({"max_record_age_s": 59}, "MaximumRecordAgeInSeconds"),
        ({"tumbling_window_s": 901}, "TumblingWindowInSeconds"),
        ({"tumbling_window_s": 60, "parallelization_factor": 2}, "TumblingWindowInSeconds"),
        ({"max_payload_bytes": EVENT_OVERHEAD_BYTES}, "max_payload_bytes"),
    ],
)
def test_out_of_range_parameters_are_refused_by_name(
    changes: dict[str, Any], parameter: str
) -> None:
    with pytest.raises(InvalidParameterValueError, match=parameter):
        BatchingConfig(**changes)


# -- batching -----------------------------------------------------------------------


async def test_batches_hold_at_most_batch_size_records(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness(BatchingConfig(batch_size=100))
    await h.feed(make(0, 250))
    assert h.batches() == [list(range(0, 100)), list(range(100, 200)), list(range(200, 250))]
    stats = h.processor.statistics()
    assert (stats.invocations, stats.records_invoked, stats.last_batch_size) == (3, 250, 50)
    assert stats.batch_sizes.count == 3 and stats.retries == 0 and stats.function_errors == 0


async def test_without_a_window_a_batch_leaves_with_what_is_there(
    autojump_clock: trio.testing.MockClock,
) -> None:
    times: list[float] = []

    async def handler(invocation: Invocation) -> InvokeOutcome:
        times.append(trio.current_time())
        return OK

    h = Harness(BatchingConfig(batch_size=100), handler)

    async def late() -> None:
        await trio.sleep(5)
        await h.processor.put(make(3, 2))

    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.processor.run)
            await h.processor.put(make(0, 3))
            await late()
            await h.processor.end_of_shard()
    assert h.batches() == [[0, 1, 2], [3, 4]]
    assert times == [0, 5]


async def test_a_batching_window_gathers_records_until_it_ends_or_the_batch_is_full(
    autojump_clock: trio.testing.MockClock,
) -> None:
    times: list[float] = []

    async def handler(invocation: Invocation) -> InvokeOutcome:
        times.append(trio.current_time())
        return OK

    h = Harness(BatchingConfig(batch_size=10, batching_window_s=10), handler)
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.processor.run)
            await h.processor.put(make(0, 3))
            await trio.sleep(4)
            await h.processor.put(make(3, 2))  # joins the window that started at 0
            await trio.sleep(16)
            await h.processor.put(make(5, 12))  # a full batch leaves at once
            await trio.sleep(30)
            await h.processor.end_of_shard()
    assert h.batches() == [[0, 1, 2, 3, 4], list(range(5, 15)), [15, 16]]
    assert times == [10, 20, 30]


async def test_the_payload_bound_cuts_batches_and_discards_a_record_too_large_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # record_size is len(data) + 90: 100 bytes for the small records, 1090 for the big one.
    big = Record(seq(4), int(BASE * 1000), b"y" * 1000, "k")
    records = [*make(0, 4), big, *make(5, 4)]
    config = BatchingConfig(batch_size=100, max_payload_bytes=EVENT_OVERHEAD_BYTES + 300)
    h = Harness(config)
    await h.feed(records)
    assert h.batches() == [[0, 1, 2], [3], [5, 6, 7], [8]]
    [info] = h.failures
    assert info.condition == PAYLOAD_TOO_LARGE and info.batch_size == 1
    assert info.start_sequence_number == info.end_sequence_number == seq(4)
    assert info.approximate_invoke_count == 0
    assert h.position("failure", lambda _: True) < h.position("checkpoint", lambda c: c != seq(3))


async def test_filtered_records_are_never_invoked_and_count_as_processed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness(BatchingConfig(batch_size=100), keep=lambda r: index_of(r) % 2 == 0)
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.processor.run)
            await h.processor.put(make(0, 10))
            await h.wait_checkpoint(seq(9))  # the last record was filtered out
            await h.processor.put(make(10, 3, key="other"))  # ...and so are these
            await h.wait_checkpoint(seq(12))
            await h.processor.end_of_shard()
    assert h.batches() == [[0, 2, 4, 6, 8], [10, 12]]
    assert h.processor.statistics().records_filtered == 6


# -- errors and retries -------------------------------------------------------------


async def test_an_error_retries_the_batch_in_order_with_the_shard_blocked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness(BatchingConfig(batch_size=3), failing_on({1}, times=2))
    await h.feed(make(0, 6))
    assert h.batches() == [[0, 1, 2], [0, 1, 2], [0, 1, 2], [3, 4, 5]]
    assert [i.attempt for i in h.invocations] == [1, 2, 3, 1]
    # Nothing was checkpointed while the batch failed; backoff grew between tries.
    assert h.position("checkpoint", lambda _: True) > h.position("invoke", lambda i: i.attempt == 3)
    stats = h.processor.statistics()
    assert (stats.function_errors, stats.retries, stats.records_invoked) == (2, 2, 12)


async def test_retries_back_off_exponentially(autojump_clock: trio.testing.MockClock) -> None:
    times: list[float] = []
    inner = failing_on({0}, times=6)

    async def handler(invocation: Invocation) -> InvokeOutcome:
        times.append(trio.current_time())
        return await inner(invocation)

    h = Harness(BatchingConfig(batch_size=1), handler)
    await h.feed(make(0, 1))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for attempt, gap in enumerate(gaps, 1):
        step = min(10.0, 0.1 * 2 ** (attempt - 1))
        assert step / 2 <= gap <= step + 1e-9


async def test_exhausted_retries_send_the_failure_record_before_the_checkpoint_passes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness(BatchingConfig(batch_size=3, max_retry_attempts=2), failing_on({4}))
    await h.feed(make(0, 9))
    assert h.batches() == [[0, 1, 2], [3, 4, 5], [3, 4, 5], [3, 4, 5], [6, 7, 8]]
    [info] = h.failures
    assert info.condition == RETRY_ATTEMPTS_EXHAUSTED
    assert (info.start_sequence_number, info.end_sequence_number) == (seq(3), seq(5))
    assert (info.approximate_invoke_count, info.batch_size, info.shard_id) == (3, 3, SHARD)
    assert info.error_type == "Error" and info.error_message == "poison [4]"
    passed = h.position("checkpoint", lambda c: c == "SHARD_END" or int(c) >= int(seq(5)))
    assert h.position("failure", lambda _: True) < passed
    stats = h.processor.statistics()
    assert (stats.records_discarded, stats.batches_discarded) == (3, 1)


async def test_bisect_isolates_a_poison_record(autojump_clock: trio.testing.MockClock) -> None:
    config = BatchingConfig(batch_size=16, bisect_on_error=True, max_retry_attempts=1)
    h = Harness(config, failing_on({23}))
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.processor.run)
            await h.processor.put(make(0, 40))
            await h.wait_checkpoint(seq(39))
            await h.processor.end_of_shard()
    [info] = h.failures
    assert info.start_sequence_number == info.end_sequence_number == seq(23)
    assert info.batch_size == 1 and info.condition == RETRY_ATTEMPTS_EXHAUSTED
    succeeded = [
        number
        for invocation, outcome in zip(h.invocations, h.entries("outcome"), strict=True)
        if outcome.ok
        for number in numbers(invocation.records)
    ]
    assert sorted(succeeded) == [i for i in range(40) if i != 23]
    assert len(succeeded) == 39  # each other record succeeded exactly once
    # The poison record was tried alone twice (one retry); the splits were not retries.
    alone = [i for i in h.invocations if numbers(i.records) == [23]]
    assert len(alone) == 2
    assert_monotonic(h.checkpoints)


async def test_a_batch_older_than_the_maximum_age_is_discarded_while_retrying(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness(BatchingConfig(batch_size=2, max_record_age_s=60), failing_on({0}))
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.processor.run)
            await h.processor.put(make(0, 2))
            await h.wait_checkpoint(seq(1))
            assert 60 <= trio.current_time() <= 75
            await h.processor.put(make(2, 2))
            await h.processor.end_of_shard()
    [info] = h.failures
    assert info.condition == RECORD_AGE_EXCEEDED and info.approximate_invoke_count > 3
    assert h.batches()[-1] == [2, 3]


async def test_records_already_too_old_are_discarded_without_an_invocation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness(BatchingConfig(batch_size=10, max_record_age_s=60))
    old = make(0, 3, at=BASE - 120)
    await h.feed([*old, *make(3, 2)])
    [info] = h.failures
    assert (info.condition, info.approximate_invoke_count, info.batch_size) == (
        RECORD_AGE_EXCEEDED,
        0,
        3,
    )
    assert h.batches() == [[3, 4]]


# -- partial batch responses --------------------------------------------------------


def reporting(first: object, then: object = None) -> Handler:
    """A handler answering ``first`` on its first call and ``then`` afterwards."""
    calls = [first]

    async def handler(invocation: Invocation) -> InvokeOutcome:
        response = calls.pop() if calls else then
        return InvokeOutcome(ok=True, response=response)

    return handler


def failures_at(*items: object) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": item} for item in items]}


async def test_a_partial_failure_checkpoints_before_the_lowest_failed_record_and_retries_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = BatchingConfig(batch_size=10, report_batch_item_failures=True)
    h = Harness(config, reporting(failures_at(seq(7), seq(5))))
    await h.feed(make(0, 10))
    assert h.batches() == [list(range(10)), list(range(5, 10))]
    assert h.invocations[1].attempt == 2
    # The checkpoint moved to the record before the lowest failure before the retry.
    assert h.position("checkpoint", lambda c: c == seq(4)) < h.position(
        "invoke", lambda i: i.attempt == 2
    )
    assert h.processor.statistics().partial_failures == 1


@pytest.mark.parametrize(
    "response",
    [None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}, "done", [1, 2]],
)
async def test_no_reported_failure_is_full_success(
    autojump_clock: trio.testing.MockClock, response: object
) -> None:
    h = Harness(BatchingConfig(batch_size=10, report_batch_item_failures=True), reporting(response))
    await h.feed(make(0, 10))
    assert h.batches() == [list(range(10))]


@pytest.mark.parametrize(
    "response",
    [
        failures_at(""),
        failures_at(None),
        failures_at(seq(99)),
        {"batchItemFailures": [{"itemId": seq(3)}]},
        {"batchItemFailures": [seq(3)]},
        {"batchItemFailures": "all"},
    ],
)
async def test_a_malformed_report_fails_the_whole_batch(
    autojump_clock: trio.testing.MockClock, response: object
) -> None:
    h = Harness(BatchingConfig(batch_size=10, report_batch_item_failures=True), reporting(response))
    await h.feed(make(0, 10))
    assert h.batches() == [list(range(10)), list(range(10))]
    assert h.processor.statistics().function_errors == 1


async def test_reports_are_ignored_without_report_batch_item_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness(BatchingConfig(batch_size=10), reporting(failures_at(seq(3))))
    await h.feed(make(0, 10))
    assert h.batches() == [list(range(10))]


async def test_with_bisect_a_partial_failure_splits_without_counting_a_retry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = BatchingConfig(
        batch_size=10, report_batch_item_failures=True, bisect_on_error=True, max_retry_attempts=0
    )
    h = Harness(config, reporting(failures_at(seq(6))))
    await h.feed(make(0, 10))
    assert h.batches() == [list(range(10)), list(range(6, 10))]
    assert h.failures == []
    # Without bisect the same answer is a retry, and none is allowed.
    config = BatchingConfig(batch_size=10, report_batch_item_failures=True, max_retry_attempts=0)
    h = Harness(config, reporting(failures_at(seq(6))))
    await h.feed(make(0, 10))
    assert h.batches() == [list(range(10))]
    [info] = h.failures
    assert (info.start_sequence_number, info.batch_size) == (seq(6), 4)


def test_judge_reads_answers_as_lambda_does() -> None:
    seqs = [seq(i) for i in range(4)]
    report = {"report_item_failures": True, "windowed": False}
    assert judge(OK, seqs, **report).succeeded == 4
    assert judge(InvokeOutcome(True, failures_at(seq(2))), seqs, **report).succeeded == 2
    assert judge(InvokeOutcome(True, failures_at(int(seq(1)))), seqs, **report).succeeded == 1
    assert judge(fail(), seqs, **report).error_type == "Error"
    windowed = {"report_item_failures": False, "windowed": True}
    assert judge(InvokeOutcome(True, {"state": {"n": 1}}), seqs, **windowed).state == {"n": 1}
    assert judge(InvokeOutcome(True, {"state": None}), seqs, **windowed).state == {}
    assert judge(InvokeOutcome(True, {}), seqs, **windowed).succeeded == 0
    assert judge(InvokeOutcome(True, {"state": [1]}), seqs, **windowed).succeeded == 0


def test_the_tracker_moves_only_past_a_finished_run() -> None:
    tracker = CompletionTracker()
    for i in range(5):
        tracker.add(seq(i), finished=i == 1)
    tracker.finish([2, 3])
    assert not tracker.advance() and tracker.checkpoint is None
    tracker.finish([0])
    assert tracker.advance() and tracker.checkpoint == seq(3) and len(tracker) == 1
    assert tracker.is_finished(2) and not tracker.is_finished(4)


# -- lease loss and backpressure ----------------------------------------------------


async def test_a_refused_checkpoint_stops_everything_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow(invocation: Invocation) -> InvokeOutcome:
        await trio.sleep(1)
        return OK

    h = Harness(BatchingConfig(batch_size=1), slow, answers=[True, False])
    with trio.fail_after(LIMIT_S):
        await h.processor.put(make(0, 5))
        await h.processor.run()
    refused = h.position("checkpoint", lambda c: c is False)
    assert all(what != "invoke" for what, _ in h.log[refused:])
    assert len(h.invocations) < 5
    assert h.processor.lease_lost and h.processor.statistics().lease_lost
    with trio.fail_after(1):
        await h.processor.put(make(5, 20_000))  # ignored, never blocks


async def test_put_waits_while_the_buffer_is_full(autojump_clock: trio.testing.MockClock) -> None:
    release = trio.Event()

    async def blocked(invocation: Invocation) -> InvokeOutcome:
        await release.wait()
        return OK

    h = Harness(BatchingConfig(batch_size=5), blocked, max_buffered_records=10)
    done = trio.Event()

    async def producer() -> None:
        await h.processor.put(make(0, 30))
        done.set()

    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.processor.run)
            nursery.start_soon(producer)
            await trio.sleep(100)
            assert not done.is_set()
            assert h.processor.statistics().records_held == 10
            release.set()
            await done.wait()
            await h.processor.end_of_shard()
    assert sum(len(b) for b in h.batches()) == 30


# -- parallelization factor ---------------------------------------------------------


@st.composite
def shard_scripts(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 60))
    return {
        "keys": draw(st.lists(st.integers(0, 15), min_size=count, max_size=count)),
        "skip": draw(st.sets(st.integers(0, count - 1), max_size=count // 4)),
        # record -> how many of its first invocations fail
        "poison": draw(st.dictionaries(st.integers(0, count - 1), st.integers(1, 3), max_size=5)),
        "delays": draw(st.lists(st.sampled_from([0, 0.01, 0.3, 2.0]), min_size=1, max_size=8)),
        "puts": draw(st.lists(st.integers(1, 20), min_size=1, max_size=6)),
        "batch_size": draw(st.integers(1, 8)),
        "bisect": draw(st.booleans()),
        "retries": draw(st.sampled_from([-1, 0, 1, 3])),
        "window": draw(st.sampled_from([0.0, 0.5])),
    }


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(script=shard_scripts())
def test_factor_ten_keeps_per_key_order_and_checkpoints_only_finished_records(
    script: dict[str, Any],
) -> None:
    keys: list[int] = script["keys"]
    count = len(keys)
    poison: dict[int, int] = script["poison"]
    delays: list[float] = script["delays"]
    in_flight: set[str] = set()
    tries: dict[int, int] = {}
    succeeded: list[int] = []
    finished = set(script["skip"])  # filtered records are finished from the start
    by_bounds: dict[tuple[str, str], list[int]] = {}
    checkpoints: list[str] = []
    calls = [0]

    async def invoke(invocation: Invocation) -> InvokeOutcome:
        batch = numbers(invocation.records)
        batch_keys = {r.partition_key for r in invocation.records}
        assert not batch_keys & in_flight, "a key in two in-flight batches"
        assert not set(batch) & set(script["skip"]), "a filtered record was invoked"
        in_flight.update(batch_keys)
        calls[0] += 1
        await trio.sleep(delays[calls[0] % len(delays)])
        in_flight.difference_update(batch_keys)
        by_bounds[(seq(batch[0]), seq(batch[-1]))] = batch
        bad = False
        for i in batch:
            tries[i] = tries.get(i, 0) + 1
            bad = bad or tries[i] <= poison.get(i, 0)
        if bad:
            return fail()
        succeeded.extend(batch)
        finished.update(batch)
        return OK

    async def send_failure(info: FailureInfo) -> None:
        finished.update(by_bounds[(info.start_sequence_number, info.end_sequence_number)])

    async def checkpoint(sequence_number: str) -> bool:
        if sequence_number == "SHARD_END":
            assert finished == set(range(count))
        else:
            upto = index_of(Record(sequence_number, 0, b"", ""))
            assert set(range(upto + 1)) <= finished, "checkpoint past an unfinished record"
            assert not checkpoints or int(checkpoints[-1]) < int(sequence_number)
        checkpoints.append(sequence_number)
        return True

    config = BatchingConfig(
        batch_size=script["batch_size"],
        batching_window_s=script["window"],
        parallelization_factor=10,
        bisect_on_error=script["bisect"],
        max_retry_attempts=script["retries"],
    )
    processor = ShardProcessor(
        config,
        shard_id=SHARD,
        invoke=invoke,
        checkpoint=checkpoint,
        send_failure=send_failure,
        record_size=lambda r: 100,
        keep=lambda r: index_of(r) not in script["skip"],
        clock=wall,
        max_buffered_records=16,
    )

    async def main() -> None:
        records = make(0, count, key=lambda i: f"key-{keys[i]}")
        with trio.fail_after(LIMIT_S):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(processor.run)
                position = 0
                for size in script["puts"] * count:
                    if position >= count:
                        break
                    await processor.put(records[position : position + size])
                    position += size
                    await trio.sleep(0.1)
                await processor.end_of_shard()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert checkpoints[-1] == "SHARD_END"
    for key in set(keys):
        mine = [i for i in succeeded if keys[i] == key]
        assert mine == sorted(mine) and len(set(mine)) == len(mine), f"key {key} out of order"
    if script["retries"] == -1:
        assert sorted(succeeded) == sorted(set(range(count)) - set(script["skip"]))


async def test_a_slow_key_does_not_hold_back_the_other_lanes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ends: dict[str, float] = {}

    async def handler(invocation: Invocation) -> InvokeOutcome:
        key = invocation.records[0].partition_key
        await trio.sleep(100 if key == "slow" else 1)
        ends[key] = trio.current_time()
        return OK

    keys = [f"k{i}" for i in range(40)]
    h = Harness(BatchingConfig(batch_size=1, parallelization_factor=10), handler)
    records = [*make(0, 1, key="slow"), *make(1, 40, key=lambda i: keys[i - 1])]
    await h.feed(records)
    # Keys share the ten lanes evenly: only the slow key's lane-mates (its share, a
    # tenth of the keys) wait for it; every other key finished long before.
    waited = [k for k in keys if ends[k] >= 100]
    assert len(waited) <= len(keys) // 10
    assert max(ends[k] for k in keys if k not in waited) < 10
    assert h.checkpoints[-1] == "SHARD_END"


async def test_iterator_age_is_the_last_records_age_when_its_invocation_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow(invocation: Invocation) -> InvokeOutcome:
        await trio.sleep(2)
        return OK

    h = Harness(BatchingConfig(batch_size=10), slow)
    await h.feed(make(0, 3, at=BASE - 5))
    stats = h.processor.statistics()
    assert stats.iterator_age_ms == pytest.approx(7000, abs=2)
    assert stats.durations.count == 1 and stats.durations.total == pytest.approx(2)


async def test_a_full_buffer_cuts_the_batching_window_short(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A rare key alone in one lane, a busy one in the other, a buffer of 20 records:
    # waiting out each 60 s window for batches that cannot fill would stall the shard.
    h = Harness(
        BatchingConfig(batch_size=100, batching_window_s=60, parallelization_factor=2),
        max_buffered_records=20,
    )
    started = trio.current_time()
    await h.feed([*make(0, 1, key="a"), *make(1, 100, key="b")])
    assert trio.current_time() - started < 60
    invoked = [index_of(r) for kind, inv in h.log if kind == "invoke" for r in inv.records]
    assert sorted(invoked) == list(range(101))
