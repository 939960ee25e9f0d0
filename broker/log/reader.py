"""The log's read side: resolving a starting position and reading a shard forward.

Reads are synchronous and short: one read transaction finds the batches,
verifies each one's checksum and decodes its records straight from the map
(a copy into Python objects, nothing else), and ends. A read is bounded by a
record count and a byte size (at least one batch is read, so a read always
makes progress). A reader that starts
inside a batch gets exactly the records from its position.

Records come out as compact tuples ``(arrival_ms, partition_key, data)`` in
chunks that share a first offset (record i of a chunk has offset
``first_offset + i``), or as whole stored batches for forwarding without
decoding (``read_batches``). No per-record object is built beyond the tuple
msgpack produces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import ormsgpack

from ..errors import InvalidArgumentError, ResourceNotFoundError
from ..model import PositionType, Shard, ShardTail, StreamDescription
from ..sequence import decode as decode_sequence
from . import batch as fmt
from . import keys
from .store import LogStore

DEFAULT_MAX_RECORDS = 10_000
DEFAULT_MAX_BYTES = 10 << 20


@dataclass(frozen=True, slots=True)
class RecordChunk:
    """Consecutive records of one shard; record i has offset ``first_offset + i``."""

    first_offset: int
    records: tuple[fmt.RecordTuple, ...]


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """A stored batch as read: its payload is a msgpack array of the records, ready to forward."""

    first_offset: int
    count: int
    first_arrival_ms: int
    last_arrival_ms: int
    payload: bytes | memoryview

    def records(self) -> tuple[fmt.RecordTuple, ...]:
        return msgpack.unpackb(self.payload, use_list=False)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class ReadResult:
    """What one read returned and where the shard stood.

    ``next_offset`` is where the next read continues. ``shard_end`` is True when
    the shard is closed and this read reached its end; ``child_shards`` then
    lists the shards that took over its hash range.
    """

    chunks: tuple[RecordChunk, ...]
    next_offset: int
    tail: ShardTail
    shard_end: bool = False
    child_shards: tuple[Shard, ...] = ()

    @property
    def count(self) -> int:
        return sum(len(c.records) for c in self.chunks)

    def records(self) -> Iterator[tuple[int, int, str, bytes]]:
        """``(offset, arrival_ms, partition_key, data)`` per record; for tests and slow paths."""
        for chunk in self.chunks:
            for i, (arrival, key, data) in enumerate(chunk.records):
                yield chunk.first_offset + i, arrival, key, data


def _scan(
    store: LogStore, inc: int, index: int, offset: int, visit: Callable[[memoryview], bool]
) -> None:
    """Call ``visit`` on each stored value holding ``offset`` onward, until it returns False.

    The values are views into the map, valid only during the call: ``visit``
    copies what it keeps (decoded records, or payload bytes). The read
    transaction ends when the scan does.
    """
    prefix = keys.shard(inc, index)
    with store.environment.reading(buffers=True) as txn:
        cursor = txn.cursor(db=store.environment.dbs["batches"])
        found = cursor.set_range(keys.batch(inc, index, offset))
        if not found or cursor.key()[:8] != prefix or keys.batch_offset(cursor.key()) > offset:
            # ``offset`` may sit inside the previous batch.
            moved = cursor.prev() if found else cursor.last()
            if moved and cursor.key()[:8] == prefix:
                header = fmt.read_header(cursor.value())
                found = cursor.next() if header.end_offset <= offset else True
            else:
                found = cursor.set_range(prefix)
        while found and cursor.key()[:8] == prefix and visit(cursor.value()):
            found = cursor.next()


def _start(
    store: LogStore, stream: str, index: int, offset: int
) -> tuple[StreamDescription, Shard, ShardTail, int]:
    """The stream, shard and tail a read works on, and where it really starts."""
    desc = stream_named(store, stream)
    shard = desc.shard(index)
    tail = store.tails.get((desc.incarnation, index), ShardTail())
    return desc, shard, tail, max(offset, tail.horizon, 1)


def _where(desc: StreamDescription, index: int) -> str:
    return f"stream {desc.name} shard {desc.shard(index).shard_id}"


def read(
    store: LogStore,
    stream: str,
    index: int,
    offset: int,
    *,
    max_records: int = DEFAULT_MAX_RECORDS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ReadResult:
    """Read a shard forward from ``offset`` (below the horizon: from the horizon).

    Stops after ``max_records`` records, or at the end of the stored batch that
    reaches ``max_bytes`` (at least one batch is read, so a read always moves).
    """
    if max_records < 1:
        raise InvalidArgumentError(f"Limit must be at least 1, got {max_records}")
    desc, shard, tail, position = _start(store, stream, index, offset)
    chunks: list[RecordChunk] = []
    if position < tail.next_offset:
        where = _where(desc, index)
        remaining = max_records
        size = 0

        def visit(value: memoryview) -> bool:
            nonlocal position, remaining, size
            header = fmt.verify(value, where)
            records = fmt.unpack_records(value, where)
            start = max(0, position - header.first_offset)
            if start or len(records) - start > remaining:
                records = records[start : start + remaining]
            if records:
                chunks.append(RecordChunk(header.first_offset + start, records))
                position = header.first_offset + start + len(records)
                remaining -= len(records)
            size += len(value)
            return remaining > 0 and size < max_bytes

        _scan(store, desc.incarnation, index, position, visit)
    return _result(desc, shard, tuple(chunks), position, tail)


def read_batches(
    store: LogStore,
    stream: str,
    index: int,
    offset: int,
    *,
    max_records: int = DEFAULT_MAX_RECORDS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[list[StoredBatch], ReadResult]:
    """Read stored batches from ``offset``, for forwarding without decoding records.

    At most ``max_records`` records, and at most ``max_bytes`` bytes counted
    as stored values for whole batches and as data plus partition key for a
    cut one, so partition keys and data never exceed it (at least one record
    is read, so a read always moves). Whole batches are forwarded as stored;
    a whole batch that would pass ``max_bytes`` ends the read before it
    (it comes whole in the next one), so only a batch that ``offset`` enters in
    its middle, one that ``max_records`` cuts, or a first batch larger than
    ``max_bytes`` is decoded and packed again. The ``ReadResult`` carries the position and
    shard state (its ``chunks`` are empty).
    """
    if max_records < 1:
        raise InvalidArgumentError(f"Limit must be at least 1, got {max_records}")
    desc, shard, tail, position = _start(store, stream, index, offset)
    out: list[StoredBatch] = []
    if position < tail.next_offset:
        where = _where(desc, index)
        count = size = 0

        def visit(value: memoryview) -> bool:
            nonlocal position, count, size
            header = fmt.verify(value, where)
            if header.end_offset <= position:
                return True
            skip = position - header.first_offset
            fits = size + len(value) <= max_bytes
            if skip == 0 and not fits and out:
                # The read ends at this batch's start rather than cutting it: the next read
                # takes it whole, so no batch is decoded and packed again at a chunk's edge.
                return False
            whole = skip == 0 and count + header.count <= max_records and fits
            if whole:
                batch = StoredBatch(
                    header.first_offset,
                    header.count,
                    header.first_arrival_ms,
                    header.last_arrival_ms,
                    bytes(fmt.payload_of(value)),
                )
                size += len(value)
            else:
                records = fmt.unpack_records(value, where)[skip : skip + max_records - count]
                taken = 0
                for _arrival, key, data in records:
                    grown = size + len(data) + len(key.encode())
                    if grown > max_bytes and (taken or out):
                        break
                    size = grown
                    taken += 1
                if not taken:
                    return False
                records = records[:taken]
                batch = StoredBatch(
                    position, taken, records[0][0], records[-1][0], ormsgpack.packb(records)
                )
            out.append(batch)
            position = batch.first_offset + batch.count
            count += batch.count
            return count < max_records and size < max_bytes and position == header.end_offset

        _scan(store, desc.incarnation, index, position, visit)
    return out, _result(desc, shard, (), position, tail)


def _result(
    desc: StreamDescription,
    shard: Shard,
    chunks: tuple[RecordChunk, ...],
    offset: int,
    tail: ShardTail,
) -> ReadResult:
    if not shard.is_open and offset > (shard.ending_offset or 0):
        return ReadResult(chunks, offset, tail, True, desc.children_of(shard.index))
    return ReadResult(chunks, offset, tail)


def stream_named(store: LogStore, name: str) -> StreamDescription:
    desc = store.streams.get(name)
    if desc is None:
        raise ResourceNotFoundError(f"Stream {name} not found")
    return desc


def resolve(
    store: LogStore,
    stream: str,
    index: int,
    position: PositionType | str,
    *,
    sequence_number: str | None = None,
    timestamp_ms: int | None = None,
) -> int:
    """The offset where a read from ``position`` starts.

    Sequence numbers of another shard or incarnation, or beyond the newest
    record + 1, are ``InvalidArgumentError``; positions below the trim horizon
    read from the horizon.
    """
    desc = stream_named(store, stream)
    shard = desc.shard(index)
    tail = store.tails.get((desc.incarnation, index), ShardTail())
    try:
        kind = PositionType(position)
    except ValueError:
        raise InvalidArgumentError(
            f"ShardIteratorType {position!r} is not valid: expected one of "
            + ", ".join(t.value for t in PositionType)
        ) from None
    if kind is PositionType.TRIM_HORIZON:
        return tail.horizon
    if kind is PositionType.LATEST:
        return tail.next_offset
    if kind is PositionType.AT_TIMESTAMP:
        if timestamp_ms is None:
            raise InvalidArgumentError("AT_TIMESTAMP needs a Timestamp")
        return _offset_at_time(store, desc, shard, tail, timestamp_ms)
    if sequence_number is None:
        raise InvalidArgumentError(f"{kind.value} needs a StartingSequenceNumber")
    seq = decode_sequence(sequence_number)
    if seq.incarnation != desc.incarnation or seq.shard_index != index:
        raise InvalidArgumentError(
            f"Invalid StartingSequenceNumber {sequence_number}: it does not belong to "
            f"{shard.shard_id} of stream {desc.name}"
        )
    offset = seq.offset + (1 if kind is PositionType.AFTER_SEQUENCE_NUMBER else 0)
    if offset > tail.next_offset:
        raise InvalidArgumentError(
            f"Invalid StartingSequenceNumber {sequence_number}: it is beyond the newest record "
            f"of {shard.shard_id}"
        )
    return max(offset, tail.horizon)


def _offset_at_time(
    store: LogStore, desc: StreamDescription, shard: Shard, tail: ShardTail, timestamp_ms: int
) -> int:
    """The first record whose arrival is at or after ``timestamp_ms`` (headers first)."""
    prefix = keys.shard(desc.incarnation, shard.index)
    value: Any = None
    with store.environment.reading(buffers=True) as txn:
        cursor = txn.cursor(db=store.environment.dbs["batches"])
        found = cursor.set_range(prefix)
        while found and bytes(cursor.key()[:8]) == prefix:
            header = fmt.read_header(cursor.value())
            if header.last_arrival_ms >= timestamp_ms:
                value = bytes(cursor.value())
                break
            found = cursor.next()
    if value is None:
        return tail.next_offset
    where = _where(desc, shard.index)
    header = fmt.verify(value, where)
    for i, record in enumerate(fmt.unpack_records(value, where)):
        if record[0] >= timestamp_ms:
            return header.first_offset + i
    return header.end_offset
