"""Polling reads: GetShardIterator and GetRecords.

``GetShardIterator`` resolves a starting position to an offset in the log
(``Log.resolve``: the five Kinesis iterator types, sequence numbers checked
against the shard and incarnation) and hands back a signed token holding it
(``iterators.py``). ``GetRecords`` opens the token, reads the shard from its
offset (at most ``Limit`` records and 10 MiB of data plus partition keys;
at least one record) and answers with the records, a new
iterator at the next offset, and how far behind the newest record the reader
is. At the end of a closed shard the new iterator is null and ``ChildShards``
lists the shards that took over its hash range.

A token names its stream by name and incarnation: a stream deleted (and
perhaps created again) since the token was issued answers
``ResourceNotFoundException``.

``Compact: true`` (a shardline extension of the native wire) answers with
``Batches`` instead of ``Records``: the stored batches as they are on disk,
``{"FirstSequenceNumber", "Records": [[arrival_ms, partition key, data],
...]}``, record i of a batch having sequence number FirstSequenceNumber + i.
The broker forwards stored bytes without building a Python object per record
(only a batch that the iterator enters in its middle, or that ``Limit`` or
the 10 MiB bound cuts, is decoded and packed again); the client expands them.
The same limits, iterator, ``MillisBehindLatest`` and ``ChildShards`` apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ormsgpack

from ..errors import InvalidArgumentError, ResourceNotFoundError
from ..log.batch import array_header
from ..log.reader import ReadResult, RecordChunk, StoredBatch
from ..model import PositionType, StreamDescription
from ..sequence import base
from . import fields as f
from .base import Broker, Prepared, Request, Response, Result, operation
from .iterators import ShardIterator
from .shapes import child_shard_view, codec
from .throttle import limit_reads

MAX_LIMIT = 10_000
MAX_RESPONSE_BYTES = 10 << 20
ITERATOR_TYPES = tuple(t.value for t in PositionType)


def _within_bound(chunks: tuple[RecordChunk, ...]) -> bool:
    """Whether every record read fits the response's byte bound (the usual case)."""
    size = 0
    for chunk in chunks:
        size += sum([len(data) + len(key) for _arrival, key, data in chunk.records])
    return size <= MAX_RESPONSE_BYTES


def _fast_response(
    broker: Broker, name: str, incarnation: int, index: int, result: ReadResult, now: int
) -> Response:
    """The response when no record is cut: the records built per chunk, with no checks."""
    start = base(incarnation, index)
    records: list[dict[str, Any]] = []
    for chunk in result.chunks:
        first = start + chunk.first_offset
        records += [
            {
                "SequenceNumber": str(first + i),
                "ApproximateArrivalTimestamp": arrival,
                "Data": data,
                "PartitionKey": key,
            }
            for i, (arrival, key, data) in enumerate(chunk.records)
        ]
    behind = 0
    tail = result.tail
    if records and result.next_offset < tail.next_offset:
        behind = max(0, tail.last_arrival_ms - records[-1]["ApproximateArrivalTimestamp"])
    response: Response = {"Records": records, "MillisBehindLatest": behind}
    if result.shard_end:
        response["NextShardIterator"] = None
        response["ChildShards"] = [child_shard_view(s) for s in result.child_shards]
    else:
        response["NextShardIterator"] = codec(broker).encode(
            ShardIterator(name, incarnation, index, result.next_offset, now)
        )
    return response


@operation("GetShardIterator")
async def get_shard_iterator(broker: Broker, request: Request) -> Response:
    name = f.required_stream(broker.config, request)
    index = f.required_shard(request, "ShardId")
    kind = f.required_choice(request, "ShardIteratorType", ITERATOR_TYPES)
    sequence = f.optional_str(request, "StartingSequenceNumber")
    timestamp = f.optional_int(request, "Timestamp", low=0)
    if kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER") and sequence is None:
        raise InvalidArgumentError(f"ShardIteratorType {kind} needs a StartingSequenceNumber")
    if kind == "AT_TIMESTAMP" and timestamp is None:
        raise InvalidArgumentError("ShardIteratorType AT_TIMESTAMP needs a Timestamp")
    desc = broker.log.describe(name)
    offset = broker.log.resolve(name, index, kind, sequence_number=sequence, timestamp_ms=timestamp)
    token = codec(broker).encode(
        ShardIterator(desc.name, desc.incarnation, index, offset, broker.log.now_ms())
    )
    return {"ShardIterator": token}


@dataclass(slots=True)
class _CompactRecords(Prepared):
    """A compact GetRecords answer: stored batch payloads spliced into the map unread."""

    batches: list[StoredBatch]
    start: int
    rest: Response
    record_count: int
    #: The stored payloads' size: data and keys plus a few bytes of framing per record.
    record_bytes: int

    def to_dict(self) -> Response:
        return {
            **self.rest,
            "Batches": [
                {
                    "FirstSequenceNumber": str(self.start + b.first_offset),
                    "Records": [list(r) for r in b.records()],
                }
                for b in self.batches
            ],
        }

    def native_body(self) -> bytes:
        # The small fields first, the batches last: a client can read
        # NextShardIterator and ask for the next page before it decodes the records.
        rest = ormsgpack.packb(self.rest)
        parts: list[bytes | memoryview] = [
            bytes([0x80 | (1 + len(self.rest))]),
            memoryview(rest)[1:],  # the rest's own fixmap header dropped
            _BATCHES_KEY,
            array_header(len(self.batches)),
        ]
        for b in self.batches:
            parts += (_BATCH_HEAD, ormsgpack.packb(str(self.start + b.first_offset)))
            parts += (_RECORDS_KEY, b.payload)
        return b"".join(parts)


_BATCHES_KEY = ormsgpack.packb("Batches")
_BATCH_HEAD = b"\x82" + ormsgpack.packb("FirstSequenceNumber")
_RECORDS_KEY = ormsgpack.packb("Records")


def _compact(
    broker: Broker, desc: StreamDescription, index: int, offset: int, limit: int, now: int
) -> Prepared:
    batches, result = broker.log.read_batches(
        desc.name, index, offset, max_records=limit, max_bytes=MAX_RESPONSE_BYTES
    )
    tail = result.tail
    behind = 0
    if batches and result.next_offset < tail.next_offset:
        behind = max(0, tail.last_arrival_ms - batches[-1].last_arrival_ms)
    rest: Response = {"MillisBehindLatest": behind}
    if result.shard_end:
        rest["NextShardIterator"] = None
        rest["ChildShards"] = [child_shard_view(s) for s in result.child_shards]
    else:
        rest["NextShardIterator"] = codec(broker).encode(
            ShardIterator(desc.name, desc.incarnation, index, result.next_offset, now)
        )
    count = sum(b.count for b in batches)
    nbytes = sum(len(b.payload) for b in batches)
    return _CompactRecords(batches, base(desc.incarnation, index), rest, count, nbytes)


@operation("GetRecords")
@limit_reads
async def get_records(broker: Broker, request: Request) -> Result:
    token = f.required_str(request, "ShardIterator", max_len=512)
    limit = f.optional_int(request, "Limit", default=MAX_LIMIT, low=1, high=MAX_LIMIT)
    assert limit is not None
    compact = f.optional_bool(request, "Compact")
    iterator_codec = codec(broker)
    now = broker.log.now_ms()
    it = iterator_codec.decode(token, now)
    desc = broker.log.describe(it.stream)
    if desc.incarnation != it.incarnation:
        raise ResourceNotFoundError(
            f"Stream {it.stream} was deleted since this ShardIterator was issued"
        )
    desc.shard(it.shard_index)
    if compact:
        return _compact(broker, desc, it.shard_index, it.offset, limit, now)
    result = broker.log.read(
        it.stream, it.shard_index, it.offset, max_records=limit, max_bytes=MAX_RESPONSE_BYTES
    )
    start = base(desc.incarnation, it.shard_index)
    if _within_bound(result.chunks):
        return _fast_response(broker, desc.name, desc.incarnation, it.shard_index, result, now)
    records: list[dict[str, Any]] = []
    append = records.append
    last_arrival: int | None = None
    next_offset = result.next_offset
    size = 0
    cut = False
    for chunk in result.chunks:
        offset = chunk.first_offset
        for arrival, key, data in chunk.records:
            # The log bounds a read by whole stored batches; the response bound is exact.
            size += len(data) + len(key)
            if size > MAX_RESPONSE_BYTES and records:
                cut = True
                break
            append(
                {
                    "SequenceNumber": str(start + offset),
                    "ApproximateArrivalTimestamp": arrival,
                    "Data": data,
                    "PartitionKey": key,
                }
            )
            last_arrival = arrival
            offset += 1
        if cut:
            next_offset = offset
            break
    tail = result.tail
    behind = 0
    if next_offset < tail.next_offset and last_arrival is not None:
        behind = max(0, tail.last_arrival_ms - last_arrival)
    response: Response = {"Records": records, "MillisBehindLatest": behind}
    if result.shard_end and not cut:
        response["NextShardIterator"] = None
        response["ChildShards"] = [child_shard_view(s) for s in result.child_shards]
    else:
        response["NextShardIterator"] = iterator_codec.encode(
            ShardIterator(desc.name, desc.incarnation, it.shard_index, next_offset, now)
        )
    return response
