"""The broker's async client: ``Client`` over one multiplexed HTTP/2 connection.

Its snake_case methods return the typed results of ``results.py``; ``call``
returns the wire maps.
"""

from __future__ import annotations

from .client import Client, error_class, kinesis_field, kinesis_request
from .results import (
    ChildShard,
    EnhancedMetrics,
    GetRecordsResult,
    GetShardIteratorResult,
    HashKeyRange,
    ListShardsResult,
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
from .transport import ConnectionLostError, RequestTimeoutError

__all__ = [
    "ChildShard",
    "Client",
    "ConnectionLostError",
    "EnhancedMetrics",
    "GetRecordsResult",
    "GetShardIteratorResult",
    "HashKeyRange",
    "ListShardsResult",
    "ListStreamsResult",
    "PutRecordResult",
    "PutRecordsResult",
    "PutRecordsResultEntry",
    "Record",
    "RequestTimeoutError",
    "SequenceNumberRange",
    "Shard",
    "StreamDescription",
    "StreamDescriptionSummary",
    "StreamModeDetails",
    "StreamSummary",
    "UpdateShardCountResult",
    "error_class",
    "kinesis_field",
    "kinesis_request",
]
