"""Idempotent producers: their ids, their expiry, and the last batch each appended per shard.

A producer is a random 128-bit id that ``InitProducer`` hands out. It numbers
its batches per shard (0, 1, 2, ...). The log remembers, per (producer, stream
incarnation, shard index), only the **last** batch it appended: its number,
its first offset and its record count. That is enough to answer a retry of
that batch with its original sequence numbers, and to refuse every other
number but the next one.

Where the decision is taken. Inside the commit that would store the batch, in
the writer thread (``StagedProducers.decide``), against the commit's staged
view: the published table plus what earlier operations of the same commit
changed. Two copies of one batch therefore can never both be appended, whether
they meet in one commit (the second is answered with the first's offsets once
the commit has placed them) or in two. The batch's row is written in the same
LMDB write transaction as its records, so after a crash both exist or neither
does. The operations layer may answer a retry of an already *published* batch
without a commit (``Log.last_batch``); anything else goes through the writer.

Stored, in the database ``producers`` (big-endian keys, so each producer's
rows follow its own key and a rolling sweep meets a producer before its rows)::

    key                                          value (msgpack array)
    producer id (16 bytes)                       [last_active_ms, expires_ms]
    producer id + incarnation u32 + shard u32    [batch_number, first_offset, count]

Expiry. A producer expires ``idle_expiry_ms`` after its last activity
(``InitProducer``, or an idempotent batch that appended records). The expiry
time is stored with it, so a changed setting applies to a producer from its
next activity. An expired producer is refused at once, exactly as one never
seen. Maintenance deletes it later, with its rows, in a rolling **sweep**: each
maintenance commit examines at most ``LogConfig.delete_chunk`` keys from where
the previous one stopped, and deletes expired producers, rows whose producer
is gone or expired, and rows of deleted streams (an incarnation never comes
back, so nothing can read them). Deleting a stream therefore leaves its rows
in place until the sweep passes; they are dropped from memory at once.

In memory. ``ProducerTable`` holds every producer and row, loaded at open and
changed only by the writer thread after a commit (``StagedProducers.publish``),
entry by entry: a reader on the trio thread sees each entry old or new, whole.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from ..errors import OutOfOrderBatchError, UnknownProducerIdError
from ..model import shard_id

if TYPE_CHECKING:
    from .store import AppendOp

ID_BYTES = 16
_ROW = struct.Struct(">II")

#: (producer id, stream incarnation, shard index)
BatchKey = tuple[bytes, int, int]


@dataclass(frozen=True, slots=True)
class Producer:
    producer_id: bytes
    last_active_ms: int
    expires_ms: int

    def is_expired(self, now_ms: int) -> bool:
        return now_ms >= self.expires_ms


@dataclass(frozen=True, slots=True)
class LastBatch:
    """The last batch a producer appended to one shard: enough to answer its retry."""

    batch_number: int
    first_offset: int
    count: int


@dataclass(frozen=True, slots=True)
class ProducerStamp:
    """What an idempotent append carries: whose batch, its number, and when it was sent."""

    producer_id: bytes
    batch_number: int
    now_ms: int
    #: The producer's idle expiry, renewed from ``now_ms`` if the batch appends.
    idle_expiry_ms: int


@dataclass(slots=True)
class Placed:
    """A batch accepted earlier in the same commit: its offsets exist once the commit wrote it."""

    batch_number: int
    count: int
    op: AppendOp
    index: int

    def last(self) -> LastBatch:
        assert self.op.result is not None
        first, count = self.op.result.ranges[self.index]
        return LastBatch(self.batch_number, first, count)


def row_key(key: BatchKey) -> bytes:
    producer_id, inc, index = key
    return producer_id + _ROW.pack(inc, index)


def _pack_producer(producer: Producer) -> bytes:
    packed: bytes = msgpack.packb([producer.last_active_ms, producer.expires_ms])
    return packed


def _pack_row(last: LastBatch) -> bytes:
    packed: bytes = msgpack.packb([last.batch_number, last.first_offset, last.count])
    return packed


class ProducerTable:
    """Every producer and its last batches, as last committed; see the module docstring."""

    def __init__(self) -> None:
        self.producers: dict[bytes, Producer] = {}
        self.batches: dict[BatchKey, LastBatch] = {}
        #: Where the next maintenance sweep starts (b"": at the first key).
        self.sweep_from = b""

    def load(self, txn: Any, db: Any, live: Callable[[int], bool]) -> None:
        """Read the table at open. Rows of deleted streams or of gone producers stay out."""
        for raw_key, value in txn.cursor(db=db):
            key = bytes(raw_key)
            if len(key) == ID_BYTES:
                last_active, expires = msgpack.unpackb(value)
                self.producers[key] = Producer(key, last_active, expires)
                continue
            producer_id = key[:ID_BYTES]
            inc, index = _ROW.unpack(key[ID_BYTES:])
            if producer_id in self.producers and live(inc):
                self.batches[(producer_id, inc, index)] = LastBatch(*msgpack.unpackb(value))

    def forget_incarnation(self, inc: int) -> None:
        """Drop a deleted stream's rows from memory (the sweep deletes them on disk)."""
        for key in [k for k in self.batches if k[1] == inc]:
            del self.batches[key]


class StagedProducers:
    """One commit's view of the producer table: the published table plus this commit's changes.

    ``None`` in the staged maps means deleted by this commit.
    """

    def __init__(self, table: ProducerTable, txn: Any, db: Any) -> None:
        self.table = table
        self.txn = txn
        self.db = db
        self.producers: dict[bytes, Producer | None] = {}
        self.batches: dict[BatchKey, LastBatch | Placed | None] = {}
        self.sweep_from: bytes | None = None

    # -- staged reads -------------------------------------------------------

    def producer(self, producer_id: bytes) -> Producer | None:
        if producer_id in self.producers:
            return self.producers[producer_id]
        return self.table.producers.get(producer_id)

    def last(self, key: BatchKey) -> LastBatch | Placed | None:
        if key in self.batches:
            return self.batches[key]
        return self.table.batches.get(key)

    # -- writes -------------------------------------------------------------

    def create(self, now_ms: int, idle_expiry_ms: int) -> Producer:
        """A new producer with a random id that no producer of the table has."""
        while True:
            producer_id = os.urandom(ID_BYTES)
            if self.producer(producer_id) is None:
                break
        producer = Producer(producer_id, now_ms, now_ms + idle_expiry_ms)
        self.producers[producer_id] = producer
        return producer

    def decide(
        self, stamp: ProducerStamp, inc: int, index: int, count: int, stream: str
    ) -> LastBatch | Placed | None:
        """None: the batch is new, append it (then ``accept`` it); else the batch it repeats.

        ``UnknownProducerIdError`` for a producer gone or expired at the
        batch's time, ``OutOfOrderBatchError`` for any number but the last
        (with the same record count) or the next.
        """
        producer = self.producer(stamp.producer_id)
        if producer is None or producer.is_expired(stamp.now_ms):
            raise unknown_producer(stamp.producer_id, stamp.idle_expiry_ms // 1000)
        last = self.last((stamp.producer_id, inc, index))
        if last is None:
            return None
        number = stamp.batch_number
        if number == last.batch_number:
            if count != last.count:
                raise count_mismatch(stamp.producer_id, number, last.count, count, index, stream)
            return last
        if number == last.batch_number + 1:
            return None
        raise out_of_order(stamp.producer_id, number, last.batch_number, index, stream)

    def accept(self, stamp: ProducerStamp, inc: int, index: int, count: int, op: AppendOp) -> None:
        """Record a new batch as the last one; its row is written with it (``write``)."""
        self.batches[(stamp.producer_id, inc, index)] = Placed(stamp.batch_number, count, op, index)
        producer = self.producer(stamp.producer_id)
        assert producer is not None
        active = max(producer.last_active_ms, stamp.now_ms)
        self.producers[stamp.producer_id] = Producer(
            stamp.producer_id, active, active + stamp.idle_expiry_ms
        )

    def write(self) -> None:
        """Write this commit's producers and rows: after its appends, in its transaction."""
        for key, entry in self.batches.items():
            if entry is None:
                continue
            last = entry.last() if isinstance(entry, Placed) else entry
            self.batches[key] = last
            self.txn.put(row_key(key), _pack_row(last), db=self.db)
        for producer_id, producer in self.producers.items():
            if producer is not None:
                self.txn.put(producer_id, _pack_producer(producer), db=self.db)

    # -- maintenance --------------------------------------------------------

    def sweep(self, now_ms: int, budget: int, live: Callable[[int], bool]) -> bool:
        """Examine up to ``budget`` keys from where the last sweep stopped; delete what is dead.

        Dead: an expired producer; a row whose producer is gone or expired, or
        whose stream was deleted. True when the budget ran out while deleting,
        so that another maintenance commit follows soon.
        """
        cursor = self.txn.cursor(db=self.db)
        start = self.table.sweep_from if self.sweep_from is None else self.sweep_from
        found = cursor.set_range(start) if start else cursor.first()
        examined = deleted = 0
        while found and examined < budget:
            key = bytes(cursor.key())
            if not key:
                break
            examined += 1
            if len(key) == ID_BYTES:
                producer = self.producer(key)
                dead = producer is None or producer.is_expired(now_ms)
                if dead:
                    self.producers[key] = None
            else:
                owner = self.producer(key[:ID_BYTES])
                inc, index = _ROW.unpack(key[ID_BYTES:])
                dead = owner is None or owner.is_expired(now_ms) or not live(inc)
                if dead:
                    self.batches[(key[:ID_BYTES], inc, index)] = None
            if dead:
                deleted += 1
                found = cursor.delete()
            else:
                found = cursor.next()
        self.sweep_from = bytes(cursor.key()) if found else b""
        cursor.close()
        return bool(deleted) and examined >= budget

    def publish(self) -> None:
        """Make a committed transaction's changes visible, entry by entry (writer thread)."""
        table = self.table
        for producer_id, producer in self.producers.items():
            if producer is None:
                table.producers.pop(producer_id, None)
            else:
                table.producers[producer_id] = producer
        for key, entry in self.batches.items():
            if entry is None:
                table.batches.pop(key, None)
            else:
                assert isinstance(entry, LastBatch), "write() placed every batch"
                table.batches[key] = entry
        if self.sweep_from is not None:
            table.sweep_from = self.sweep_from


# -- refusals, worded once for the log and the operations layer ------------------------


def unknown_producer(producer_id: bytes, idle_expiry_s: int) -> UnknownProducerIdError:
    return UnknownProducerIdError(
        f"ProducerId {producer_id.hex()} is unknown or expired (a producer expires "
        f"{idle_expiry_s} s after its last idempotent batch): call InitProducer for a new one"
    )


def count_mismatch(
    producer_id: bytes, number: int, committed: int, count: int, index: int, stream: str
) -> OutOfOrderBatchError:
    """A repeat of the last batch number whose record count is not the committed batch's."""
    return OutOfOrderBatchError(
        f"BatchNumber {number} of producer {producer_id.hex()} on {shard_id(index)} of stream "
        f"{stream} was committed with {committed} record(s), and this request has {count}: a "
        "retry resends the same records"
    )


def out_of_order(
    producer_id: bytes, number: int, last: int, index: int, stream: str
) -> OutOfOrderBatchError:
    """The refusal of a batch number that is neither ``last`` (a retry) nor ``last + 1``."""
    kind = "older than" if number < last else "beyond"
    return OutOfOrderBatchError(
        f"BatchNumber {number} of producer {producer_id.hex()} on {shard_id(index)} of stream "
        f"{stream} is {kind} the expected one: expected {last + 1} (or {last} to retry the "
        "last batch)"
    )
