"""What goes in and out of a shard's processor: its settings, an invocation, a failure.

``BatchingConfig`` holds a mapping's batching parameters with Lambda's names
and ranges (refused with ``InvalidParameterValueException`` naming the
parameter); ``Invocation`` is one call of the function as the engine asks for
it; ``FailureInfo`` is what the ``OnFailure`` record of a discarded batch says.
``consumers.batching`` (the engine) re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.client import Record
from broker.errors import InvalidParameterValueError

#: The event's bytes beside its records (``{"Records": []}``, window fields, state).
EVENT_OVERHEAD_BYTES = 1024

RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"
PAYLOAD_TOO_LARGE = "PayloadTooLarge"


def _require(ok: bool, parameter: str, why: str) -> None:
    if not ok:
        raise InvalidParameterValueError(f"{parameter} {why}")


@dataclass(frozen=True)
class BatchingConfig:
    """A mapping's batching parameters (Lambda's, reference §3.1), checked on creation."""

    batch_size: int = 100
    batching_window_s: float = 0.0
    parallelization_factor: int = 1
    bisect_on_error: bool = False
    max_retry_attempts: int = -1
    max_record_age_s: int = -1
    report_batch_item_failures: bool = False
    tumbling_window_s: int = 0
    max_payload_bytes: int = 6 * 1024 * 1024

    def __post_init__(self) -> None:
        _require(1 <= self.batch_size <= 10_000, "BatchSize", "must be between 1 and 10000")
        _require(
            0 <= self.batching_window_s <= 300,
            "MaximumBatchingWindowInSeconds",
            "must be between 0 and 300",
        )
        _require(
            1 <= self.parallelization_factor <= 10,
            "ParallelizationFactor",
            "must be between 1 and 10",
        )
        _require(
            self.max_retry_attempts == -1 or 0 <= self.max_retry_attempts <= 10_000,
            "MaximumRetryAttempts",
            "must be -1 (unlimited) or between 0 and 10000",
        )
        _require(
            self.max_record_age_s == -1 or 60 <= self.max_record_age_s <= 604_800,
            "MaximumRecordAgeInSeconds",
            "must be -1 (unlimited) or between 60 and 604800",
        )
        _require(
            0 <= self.tumbling_window_s <= 900,
            "TumblingWindowInSeconds",
            "must be between 0 and 900",
        )
        _require(
            self.tumbling_window_s == 0 or self.parallelization_factor == 1,
            "TumblingWindowInSeconds",
            "requires ParallelizationFactor 1",
        )
        _require(
            self.max_payload_bytes > EVENT_OVERHEAD_BYTES,
            "max_payload_bytes",
            f"must be more than the event's overhead of {EVENT_OVERHEAD_BYTES} bytes",
        )


@dataclass(frozen=True)
class Invocation:
    """One call of the function: the worker turns it into Lambda's Kinesis event."""

    records: list[Record]
    shard_id: str
    #: Lambda's ``approximateInvokeCount``: 1, then 2, ... for these records.
    attempt: int = 1
    #: Tumbling windows only: the window (epoch seconds, start and end) and its state.
    window: tuple[float, float] | None = None
    state: dict[str, Any] | None = None
    is_final: bool = False
    terminated_early: bool = False


@dataclass(frozen=True)
class FailureInfo:
    """What the ``OnFailure`` record of a discarded batch says (Lambda's ``KinesisBatchInfo``)."""

    #: ``RetryAttemptsExhausted``, ``RecordAgeExceeded`` or ``PayloadTooLarge``.
    condition: str
    shard_id: str
    #: Invocations of these records (0 when discarded before any).
    approximate_invoke_count: int
    start_sequence_number: str
    end_sequence_number: str
    #: Arrival times of the first and last record, epoch milliseconds.
    approximate_arrival_of_first_record: int
    approximate_arrival_of_last_record: int
    batch_size: int
    #: The last invocation's error, if there was one.
    error_type: str | None = None
    error_message: str | None = None
