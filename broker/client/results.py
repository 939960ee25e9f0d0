"""Typed results of the ``Client``'s snake_case methods, read from the wire maps.

Each type mirrors one Kinesis response shape with the field names in
snake_case (``ShardId`` -> ``shard_id``, ``StreamARN`` -> ``stream_arn``) and
is built by ``from_wire(body)`` from the decoded msgpack map of the native wire
(``docs/protocol.md``). Values keep their wire types: sequence numbers, hash
keys and tokens stay strings, times stay integer milliseconds since the epoch
(``Record.arrival`` gives a ``datetime``), ``Data`` stays ``bytes``.

Reading is forward compatible: a field this module does not know is ignored,
and a field the protocol lists as conditional (``NextToken``,
``ParentShardId``, ``EndingSequenceNumber``, ``ChildShards``, ...) may be
absent, read as ``None`` or an empty list. A field the protocol always sends
is looked up directly, so a map without it raises ``KeyError`` (or
``TypeError`` for a value of the wrong shape); the ``Client`` maps both to a
named error at its edge. Values are not type-checked one by one: the maps come
from our own broker, and the per-record types are on the hot paths.

Two kinds of type, by how often they are built. A result built once per call
is a frozen dataclass with slots. A result built once per *record*
(``Record``, ``PutRecordsResultEntry``) is a ``typing.NamedTuple`` built with
``tuple.__new__``: equally immutable and typed, but a frozen dataclass's
``__init__`` sets each field through ``object.__setattr__`` and costs about
530 ns per record against about 170 ns, as much again as decoding the record
(``GetRecordsResult.from_wire`` has the figures). They are tuples, so they also
unpack and index in field order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Self

from ..protocol.compact_puts import answered
from ..sequence import decimal_run

Wire = Mapping[str, Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def datetime_from_ms(ms: int) -> datetime:
    """Milliseconds since the epoch as an aware UTC ``datetime``, exactly (no float)."""
    return _EPOCH + timedelta(milliseconds=ms)


# -- shards -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HashKeyRange:
    """An inclusive range of 128-bit hash keys, as decimal strings."""

    starting_hash_key: str
    ending_hash_key: str

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(body["StartingHashKey"], body["EndingHashKey"])


@dataclass(frozen=True, slots=True)
class SequenceNumberRange:
    """A shard's sequence numbers; ``ending_sequence_number`` is set once it is closed."""

    starting_sequence_number: str
    ending_sequence_number: str | None = None

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(body["StartingSequenceNumber"], body.get("EndingSequenceNumber"))


@dataclass(frozen=True, slots=True)
class Shard:
    shard_id: str
    hash_key_range: HashKeyRange
    sequence_number_range: SequenceNumberRange
    parent_shard_id: str | None = None
    adjacent_parent_shard_id: str | None = None

    @property
    def is_open(self) -> bool:
        """Whether the shard still takes writes (it has no ending sequence number)."""
        return self.sequence_number_range.ending_sequence_number is None

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(
            shard_id=body["ShardId"],
            hash_key_range=HashKeyRange.from_wire(body["HashKeyRange"]),
            sequence_number_range=SequenceNumberRange.from_wire(body["SequenceNumberRange"]),
            parent_shard_id=body.get("ParentShardId"),
            adjacent_parent_shard_id=body.get("AdjacentParentShardId"),
        )


@dataclass(frozen=True, slots=True)
class ChildShard:
    """A shard that took over part of a closed shard's hash range."""

    shard_id: str
    parent_shards: list[str]
    hash_key_range: HashKeyRange

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(
            body["ShardId"],
            list(body["ParentShards"]),
            HashKeyRange.from_wire(body["HashKeyRange"]),
        )


# -- streams --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamModeDetails:
    stream_mode: str

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(body["StreamMode"])


@dataclass(frozen=True, slots=True)
class EnhancedMetrics:
    shard_level_metrics: list[str]

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(list(body.get("ShardLevelMetrics", ())))


def _mode(body: Wire) -> StreamModeDetails | None:
    details = body.get("StreamModeDetails")
    return None if details is None else StreamModeDetails.from_wire(details)


def _monitoring(body: Wire) -> list[EnhancedMetrics]:
    return [EnhancedMetrics.from_wire(m) for m in body["EnhancedMonitoring"]]


@dataclass(frozen=True, slots=True)
class StreamDescription:
    """``DescribeStream``: a stream and one page of its shards."""

    stream_name: str
    stream_arn: str
    stream_status: str
    shards: list[Shard]
    has_more_shards: bool
    retention_period_hours: int
    stream_creation_timestamp: int
    enhanced_monitoring: list[EnhancedMetrics]
    stream_mode_details: StreamModeDetails | None = None
    encryption_type: str | None = None

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        """From the ``StreamDescription`` map (the response's only field)."""
        return cls(
            stream_name=body["StreamName"],
            stream_arn=body["StreamARN"],
            stream_status=body["StreamStatus"],
            shards=[Shard.from_wire(s) for s in body["Shards"]],
            has_more_shards=body["HasMoreShards"],
            retention_period_hours=body["RetentionPeriodHours"],
            stream_creation_timestamp=body["StreamCreationTimestamp"],
            enhanced_monitoring=_monitoring(body),
            stream_mode_details=_mode(body),
            encryption_type=body.get("EncryptionType"),
        )


@dataclass(frozen=True, slots=True)
class StreamDescriptionSummary:
    """``DescribeStreamSummary``: a stream without its shards."""

    stream_name: str
    stream_arn: str
    stream_status: str
    retention_period_hours: int
    stream_creation_timestamp: int
    enhanced_monitoring: list[EnhancedMetrics]
    open_shard_count: int
    stream_mode_details: StreamModeDetails | None = None
    encryption_type: str | None = None
    consumer_count: int | None = None

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        """From the ``StreamDescriptionSummary`` map (the response's only field)."""
        return cls(
            stream_name=body["StreamName"],
            stream_arn=body["StreamARN"],
            stream_status=body["StreamStatus"],
            retention_period_hours=body["RetentionPeriodHours"],
            stream_creation_timestamp=body["StreamCreationTimestamp"],
            enhanced_monitoring=_monitoring(body),
            open_shard_count=body["OpenShardCount"],
            stream_mode_details=_mode(body),
            encryption_type=body.get("EncryptionType"),
            consumer_count=body.get("ConsumerCount"),
        )


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """One entry of ``ListStreams``' ``StreamSummaries``."""

    stream_name: str
    stream_arn: str
    stream_status: str
    stream_mode_details: StreamModeDetails | None = None
    stream_creation_timestamp: int | None = None

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(
            stream_name=body["StreamName"],
            stream_arn=body["StreamARN"],
            stream_status=body["StreamStatus"],
            stream_mode_details=_mode(body),
            stream_creation_timestamp=body.get("StreamCreationTimestamp"),
        )


@dataclass(frozen=True, slots=True)
class ListStreamsResult:
    stream_names: list[str]
    has_more_streams: bool
    stream_summaries: list[StreamSummary]
    next_token: str | None = None

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(
            stream_names=list(body["StreamNames"]),
            has_more_streams=body["HasMoreStreams"],
            stream_summaries=[StreamSummary.from_wire(s) for s in body.get("StreamSummaries", ())],
            next_token=body.get("NextToken"),
        )


@dataclass(frozen=True, slots=True)
class ListShardsResult:
    shards: list[Shard]
    next_token: str | None = None

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls([Shard.from_wire(s) for s in body.get("Shards", ())], body.get("NextToken"))


@dataclass(frozen=True, slots=True)
class UpdateShardCountResult:
    stream_name: str
    stream_arn: str
    current_shard_count: int
    target_shard_count: int

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(
            body["StreamName"],
            body["StreamARN"],
            body["CurrentShardCount"],
            body["TargetShardCount"],
        )


# -- writes -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PutRecordResult:
    shard_id: str
    sequence_number: str
    encryption_type: str | None = None

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(body["ShardId"], body["SequenceNumber"], body.get("EncryptionType"))


class PutRecordsResultEntry(NamedTuple):
    """The outcome of one record of a ``PutRecords``: where it went, or why it failed."""

    shard_id: str | None
    sequence_number: str | None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None

    @property
    def failed(self) -> bool:
        return self.error_code is not None

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        get = body.get
        return cls(get("ShardId"), get("SequenceNumber"), get("ErrorCode"), get("ErrorMessage"))


@dataclass(frozen=True, slots=True)
class PutRecordsResult:
    """``PutRecords``: one entry per request record, in request order.

    ``deduplicated``: the request was an idempotent batch that the broker had
    already committed; ``records`` are the original sequence numbers and
    nothing was appended this time.
    """

    failed_record_count: int
    records: list[PutRecordsResultEntry]
    encryption_type: str | None = None
    deduplicated: bool = False

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        new = tuple.__new__
        if "Records" not in body and "Positions" in body:
            # The compact answer (every record succeeded): positions and first numbers.
            placed = [new(PutRecordsResultEntry, (*where, None, None)) for where in answered(body)]
            return cls(0, placed, body.get("EncryptionType"), body.get("Deduplicated") is True)
        entries = body["Records"]
        failed = body.get("FailedRecordCount")
        if failed == 0:
            # Every entry succeeded, so each has exactly ShardId and SequenceNumber.
            records = [
                new(PutRecordsResultEntry, (e["ShardId"], e["SequenceNumber"], None, None))
                for e in entries
            ]
        else:
            records = [
                new(
                    PutRecordsResultEntry,
                    (
                        e.get("ShardId"),
                        e.get("SequenceNumber"),
                        e.get("ErrorCode"),
                        e.get("ErrorMessage"),
                    ),
                )
                for e in entries
            ]
        if failed is None:
            failed = sum(1 for r in records if r.error_code is not None)
        return cls(failed, records, body.get("EncryptionType"), body.get("Deduplicated") is True)


@dataclass(frozen=True, slots=True)
class InitProducerResult:
    """``InitProducer``: a new idempotent producer, and how long it may stay idle."""

    producer_id: str
    idle_expiry_seconds: int

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(body["ProducerId"], body["IdleExpirySeconds"])


# -- reads ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetShardIteratorResult:
    shard_iterator: str

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(body["ShardIterator"])


class Record(NamedTuple):
    """A record read by ``GetRecords``."""

    sequence_number: str
    #: Integer milliseconds since the epoch, as on the wire; ``arrival`` as a ``datetime``.
    approximate_arrival_timestamp: int
    data: bytes
    partition_key: str

    @property
    def arrival(self) -> datetime:
        """``approximate_arrival_timestamp`` as an aware UTC ``datetime``."""
        return datetime_from_ms(self.approximate_arrival_timestamp)

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(
            body["SequenceNumber"],
            body["ApproximateArrivalTimestamp"],
            body["Data"],
            body["PartitionKey"],
        )


@dataclass(frozen=True, slots=True)
class GetRecordsResult:
    """``GetRecords``: a page of records and where to read next.

    ``next_shard_iterator`` is ``None`` at the end of a closed shard, and then
    ``child_shards`` lists the shards that took over its hash range.
    """

    records: list[Record]
    next_shard_iterator: str | None
    millis_behind_latest: int
    child_shards: list[ChildShard]

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        # The per-record cost is the point here: one comprehension, no call per record
        # but tuple.__new__ (C). Building 10,000 records took 1.7 ms this way, 2.7 ms
        # through Record(...) (the NamedTuple's Python __new__) and 5.3 ms as a frozen
        # slots dataclass; decoding them from msgpack took 5.6 ms (timeit, 2-core VM).
        new = tuple.__new__
        batches = body.get("Batches")
        if batches is not None:
            # Compact answers: stored batches, record i at FirstSequenceNumber + i.
            records = []
            for batch in batches:
                stored = batch["Records"]
                sequences = decimal_run(int(batch["FirstSequenceNumber"]), len(stored))
                records += [
                    new(Record, (sequence, arrival, data, key))
                    for sequence, (arrival, key, data) in zip(sequences, stored, strict=True)
                ]
        else:
            records = [
                new(
                    Record,
                    (
                        r["SequenceNumber"],
                        r["ApproximateArrivalTimestamp"],
                        r["Data"],
                        r["PartitionKey"],
                    ),
                )
                for r in body["Records"]
            ]
        children = body.get("ChildShards")
        return cls(
            records,
            body["NextShardIterator"],
            body["MillisBehindLatest"],
            [] if not children else [ChildShard.from_wire(c) for c in children],
        )


# -- consumers (enhanced fan-out) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Consumer:
    """A registered consumer (``RegisterStreamConsumer``, ``ListStreamConsumers``)."""

    consumer_name: str
    consumer_arn: str
    consumer_status: str
    #: Integer milliseconds since the epoch, as on the wire; ``created`` as a ``datetime``.
    consumer_creation_timestamp: int

    @property
    def created(self) -> datetime:
        return datetime_from_ms(self.consumer_creation_timestamp)

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(
            body["ConsumerName"],
            body["ConsumerARN"],
            body["ConsumerStatus"],
            body["ConsumerCreationTimestamp"],
        )


@dataclass(frozen=True, slots=True)
class ConsumerDescription:
    """``DescribeStreamConsumer``: a consumer and the ARN of its stream."""

    consumer_name: str
    consumer_arn: str
    consumer_status: str
    consumer_creation_timestamp: int
    stream_arn: str

    @property
    def created(self) -> datetime:
        return datetime_from_ms(self.consumer_creation_timestamp)

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        """From the ``ConsumerDescription`` map (the response's only field)."""
        return cls(
            body["ConsumerName"],
            body["ConsumerARN"],
            body["ConsumerStatus"],
            body["ConsumerCreationTimestamp"],
            body["StreamARN"],
        )


@dataclass(frozen=True, slots=True)
class ListStreamConsumersResult:
    consumers: list[Consumer]
    next_token: str | None = None

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls([Consumer.from_wire(c) for c in body["Consumers"]], body.get("NextToken"))


# -- leases and checkpoints ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """A lease as ``AcquireLease``, ``RenewLease``, ``ReleaseLease`` and ``ListLeases`` give it.

    ``owner`` is empty once the lease was released; ``held`` says whether it
    had an owner and had not expired when the broker answered. Checkpoints and
    renewals carry ``lease_counter``.
    """

    shard_id: str
    application_name: str
    owner: str
    lease_counter: int
    expires_at: int
    held: bool

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(
            body["ShardId"],
            body["ApplicationName"],
            body["Owner"],
            body["LeaseCounter"],
            body["ExpiresAt"],
            body["Held"],
        )


@dataclass(frozen=True, slots=True)
class ListLeasesResult:
    leases: list[LeaseInfo]
    next_token: str | None = None

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls([LeaseInfo.from_wire(x) for x in body["Leases"]], body.get("NextToken"))


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """Where an application got to in a shard: resume AFTER ``sequence_number``.

    ``sequence_number`` is ``"SHARD_END"`` once the shard was processed to its
    end; ``lease_counter`` is the counter the checkpoint was written under, if
    any.
    """

    shard_id: str
    application_name: str
    sequence_number: str
    updated_at: int
    lease_counter: int | None = None

    @property
    def shard_end(self) -> bool:
        return self.sequence_number == "SHARD_END"

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(
            body["ShardId"],
            body["ApplicationName"],
            body["SequenceNumber"],
            body["UpdatedAt"],
            body.get("LeaseCounter"),
        )
