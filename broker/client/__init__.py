"""The broker's async client: ``Client`` over one multiplexed HTTP/2 connection.

Its snake_case methods return the typed results of ``results.py``; ``call``
returns the wire maps.
"""

from __future__ import annotations

from .backoff import Backoff
from .batches import ProducerStatistics, RecordHandle
from .client import Client, error_class, kinesis_field, kinesis_request
from .mappings import EventSourceMapping, ListEventSourceMappingsResult
from .producer import Producer, ProducerClosedError
from .results import (
    CheckpointInfo,
    ChildShard,
    Consumer,
    ConsumerDescription,
    EnhancedMetrics,
    GetRecordsResult,
    GetShardIteratorResult,
    HashKeyRange,
    InitProducerResult,
    LeaseInfo,
    ListLeasesResult,
    ListShardsResult,
    ListStreamConsumersResult,
    ListStreamsResult,
    PutRecordResult,
    PutRecordsResult,
    PutRecordsResultEntry,
    Record,
    SequenceNumberRange,
    Shard,
    StreamDescription,
    StreamDescriptionSummary,
    StreamModeDetails,
    StreamSummary,
    UpdateShardCountResult,
)
from .streaming import (
    EndEvent,
    ErrorEvent,
    Event,
    HeartbeatEvent,
    RecordsEvent,
    ShardEvents,
    records_of,
)
from .transport import ConnectionLostError, RequestTimeoutError, StreamedResponse

__all__ = [
    "Backoff",
    "CheckpointInfo",
    "ChildShard",
    "Client",
    "ConnectionLostError",
    "Consumer",
    "ConsumerDescription",
    "EndEvent",
    "EnhancedMetrics",
    "ErrorEvent",
    "Event",
    "EventSourceMapping",
    "GetRecordsResult",
    "GetShardIteratorResult",
    "HashKeyRange",
    "HeartbeatEvent",
    "InitProducerResult",
    "LeaseInfo",
    "ListEventSourceMappingsResult",
    "ListLeasesResult",
    "ListShardsResult",
    "ListStreamConsumersResult",
    "ListStreamsResult",
    "Producer",
    "ProducerClosedError",
    "ProducerStatistics",
    "PutRecordResult",
    "PutRecordsResult",
    "PutRecordsResultEntry",
    "Record",
    "RecordHandle",
    "RecordsEvent",
    "RequestTimeoutError",
    "SequenceNumberRange",
    "Shard",
    "ShardEvents",
    "StreamDescription",
    "StreamDescriptionSummary",
    "StreamModeDetails",
    "StreamSummary",
    "StreamedResponse",
    "UpdateShardCountResult",
    "error_class",
    "kinesis_field",
    "kinesis_request",
    "records_of",
]
