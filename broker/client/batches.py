"""The ``Producer``'s batches, the handles ``send`` returns, and its statistics.

A ``Batch`` is the records of one shard that travel in one ``PutRecords``:
their request entries (maps ready for msgpack, built once by ``send``), the
time each was handed to ``send``, and one ``trio.Event`` set when the batch is
settled. It settles in one of three ways, once:

* **answered**: ``answers`` holds the broker's entries (``ShardId``,
  ``SequenceNumber``) in record order, as maps or, from a compact answer
  (``broker.protocol.compact_puts``), as pairs;
* **failed**: ``error`` is the error every one of its records fails with;
* **moved**: some or all of its records now travel in other batches (the shard
  map changed under them, or a partly refused batch retries its refused
  records); ``moved`` maps a record's index to its new (batch, index).

A ``RecordHandle`` is only a reference (batch, index): handles cost no event
and no task each. Awaiting one waits for its batch's event and follows
``moved`` until it reaches the batch that answered or failed the record.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import trio

from ..protocol.compact_puts import Placed

#: A record's request entry: ``{"Data": bytes, "PartitionKey": str[, "ExplicitHashKey": str]}``.
Entry = dict[str, Any]


class Batch:
    """Records of one shard sent together (module docstring)."""

    __slots__ = (
        "answers",
        "capacity",
        "digests",
        "done",
        "entries",
        "error",
        "free",
        "moved",
        "number",
        "opened_at",
        "producer_id",
        "times",
        "uncertain",
    )

    def __init__(self, opened_at: float, capacity: int) -> None:
        self.entries: list[Entry] = []
        #: The MD5 digest of each entry's key, when ``send`` hashed every one (it routes by
        #: them); a batch with any entry added otherwise has fewer, and is hashed again.
        self.digests: list[bytes] = []
        #: ``time.perf_counter()`` of each record's ``send``, for the latency figures.
        self.times: list[float] = []
        #: Bytes (data plus keys, as the broker counts a request's size) it may take,
        #: and how many of those are left: one subtraction per record.
        self.capacity = capacity
        self.free = capacity
        #: trio time of the first record: the batch is sent ``linger`` after it.
        self.opened_at = opened_at
        self.done = trio.Event()
        #: The broker's entries (maps), or ``(ShardId, SequenceNumber)`` from a compact answer.
        self.answers: list[dict[str, Any]] | list[tuple[str, str]] | Placed | None = None
        self.error: BaseException | None = None
        self.moved: dict[int, tuple[Batch, int]] | None = None
        #: Idempotence: the (producer id, batch number) it was first sent under,
        #: kept through its retries; None until it is first sent.
        self.producer_id: str | None = None
        self.number: int | None = None
        #: An attempt ended without an answer: the broker may hold the batch already.
        self.uncertain = False

    @property
    def nbytes(self) -> int:
        """Its records' data plus keys."""
        return self.capacity - self.free

    def add(self, entry: Entry, size: int, at: float) -> int:
        """Append a record sent at ``at``; its index here."""
        index = len(self.entries)
        self.entries.append(entry)
        self.times.append(at)
        self.free -= size
        return index


async def settled(batch: Batch) -> None:
    """Wait until every record of ``batch`` was answered or failed, wherever it moved."""
    await batch.done.wait()
    if batch.moved:
        targets = {id(b): b for b, _ in batch.moved.values()}
        for target in targets.values():
            await settled(target)


class RecordHandle:
    """Where one sent record stands; ``await handle`` gives ``(shard_id, sequence_number)``.

    Made by ``Producer.send`` only. Awaiting it raises the error the record
    finally failed with (the last retriable one once retries ran out, or a
    non-retriable one at once).
    """

    __slots__ = ("_batch", "_index")

    _batch: Batch
    _index: int

    def done(self) -> bool:
        """Whether the record was answered or failed (``await`` returns at once)."""
        batch, index = self._batch, self._index
        while batch.done.is_set():
            moved = batch.moved
            if moved is None or index not in moved:
                return True
            batch, index = moved[index]
        return False

    async def result(self) -> tuple[str, str]:
        """``(shard_id, sequence_number)`` once the record is durable, or its error raised."""
        batch, index = self._batch, self._index
        while True:
            await batch.done.wait()
            moved = batch.moved
            if moved is not None and index in moved:
                batch, index = moved[index]
                continue
            return _settled(batch, index)

    def result_nowait(self) -> tuple[str, str]:
        """``result()`` of a record that is ``done()``; ``trio.WouldBlock`` before that."""
        batch, index = self._batch, self._index
        while True:
            if not batch.done.is_set():
                raise trio.WouldBlock("the record is not settled yet")
            moved = batch.moved
            if moved is not None and index in moved:
                batch, index = moved[index]
                continue
            return _settled(batch, index)

    def __await__(self) -> Generator[Any, None, tuple[str, str]]:
        return self.result().__await__()


def _settled(batch: Batch, index: int) -> tuple[str, str]:
    if batch.error is not None:
        raise batch.error
    assert batch.answers is not None
    entry = batch.answers[index]
    if isinstance(entry, tuple):
        return entry
    return entry["ShardId"], entry["SequenceNumber"]


def new_handle(batch: Batch, index: int) -> RecordHandle:
    """A handle without ``__init__``'s call overhead: one of these per record."""
    handle = object.__new__(RecordHandle)
    handle._batch = batch
    handle._index = index
    return handle


class LatencyWindow:
    """The latencies of the last ``size`` acknowledged records, in seconds.

    A ring of float64: adding a batch's latencies is one vectorised subtraction
    and one or two slice copies, whatever the batch's size; percentiles look at
    the window only, so they follow the producer's recent behaviour and the
    memory stays bounded.
    """

    __slots__ = ("_count", "_values")

    def __init__(self, size: int = 1 << 16) -> None:
        self._values = np.zeros(size, dtype=np.float64)
        self._count = 0

    def add(self, now: float, times: list[float]) -> None:
        """Record ``now - t`` for each send time ``t``."""
        if not times:
            return
        latencies = now - np.asarray(times, dtype=np.float64)
        values, size = self._values, len(self._values)
        n = len(latencies)
        if n >= size:
            values[:] = latencies[-size:]
        else:
            at = self._count % size
            first = min(n, size - at)
            values[at : at + first] = latencies[:first]
            values[: n - first] = latencies[first:]
        self._count += n

    def percentiles_ms(self, quantiles: tuple[float, ...]) -> list[float] | None:
        """The given percentiles (0..100) in milliseconds; None before any record."""
        filled = self._values[: min(self._count, len(self._values))]
        if not len(filled):
            return None
        return [float(v) * 1000.0 for v in np.percentile(filled, quantiles)]


@dataclass(frozen=True, slots=True)
class ProducerStatistics:
    """What a ``Producer`` did so far (``Producer.statistics()``).

    Records: every record given to ``send`` is exactly one of sent, failed or
    pending. ``records_retried`` counts record re-sends (a record sent three
    times counts two); ``records_deduplicated`` the records of batches the
    broker had already committed and answered from its memory (a retry after
    a lost answer); ``records_possibly_duplicated`` the records re-sent after
    an attempt whose outcome is unknown when nothing could deduplicate them
    (``idempotent=False``, or the producer id expired in between): each may
    be in the log twice. Latencies run from ``send`` to the acknowledgement,
    over the last 65,536 acknowledged records; None before the first.
    """

    records_sent: int
    records_failed: int
    records_pending: int
    records_retried: int
    records_deduplicated: int
    records_possibly_duplicated: int
    bytes_sent: int
    #: Batches acknowledged, and PutRecords requests made (retries included).
    batches: int
    requests: int
    mean_batch_records: float
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    latency_p99_ms: float | None
