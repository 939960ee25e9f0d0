"""Response shapes shared by handlers, and the per-broker helpers they lean on.

Shards, child shards and stream descriptions are built here, once, in Kinesis'
field names: hash keys and sequence numbers as decimal strings, times as
integer milliseconds since the epoch.
"""

from __future__ import annotations

from typing import Any

from ..config import BrokerConfig
from ..hashing import ShardRouter
from ..model import Shard, StreamDescription, shard_id
from ..sequence import encode
from .base import Broker
from .iterators import IteratorCodec, codec_for


def codec(broker: Broker) -> IteratorCodec:
    return codec_for(
        broker.config.iterator_secret, broker.config.iterator_lifetime_s, broker.extras
    )


def router(broker: Broker, desc: StreamDescription) -> ShardRouter:
    """The router of a stream's current shard map, cached per description object."""
    cache: dict[str, tuple[StreamDescription, ShardRouter]] = broker.extras.setdefault(
        "routers", {}
    )
    hit = cache.get(desc.name)
    if hit is not None and hit[0] is desc:
        return hit[1]
    made = ShardRouter(desc.shards)
    if len(cache) > 4096:
        cache.clear()
    cache[desc.name] = (desc, made)
    return made


def hash_range(shard: Shard) -> dict[str, str]:
    return {
        "StartingHashKey": str(shard.hash_range.start),
        "EndingHashKey": str(shard.hash_range.end),
    }


def shard_view(desc: StreamDescription, shard: Shard) -> dict[str, Any]:
    seq: dict[str, str] = {
        "StartingSequenceNumber": encode(desc.incarnation, shard.index, 0),
    }
    if shard.ending_offset is not None:
        seq["EndingSequenceNumber"] = encode(desc.incarnation, shard.index, shard.ending_offset)
    view: dict[str, Any] = {"ShardId": shard.shard_id}
    if shard.parent is not None:
        view["ParentShardId"] = shard_id(shard.parent)
    if shard.adjacent_parent is not None:
        view["AdjacentParentShardId"] = shard_id(shard.adjacent_parent)
    view["HashKeyRange"] = hash_range(shard)
    view["SequenceNumberRange"] = seq
    return view


def child_shard_view(shard: Shard) -> dict[str, Any]:
    return {
        "ShardId": shard.shard_id,
        "ParentShards": [shard_id(p) for p in shard.parents],
        "HashKeyRange": hash_range(shard),
    }


def record_limit(config: BrokerConfig, desc: StreamDescription) -> int:
    """The largest record (data plus key, bytes) the stream takes.

    Its own ``MaxRecordSizeInKiB`` if it has one, within the broker's
    ``max_record_bytes``, which bounds every stream (``stream_settings.py``).
    """
    if desc.max_record_kib is None:
        return config.max_record_bytes
    return min(config.max_record_bytes, desc.max_record_kib * 1024)


def summary_fields(broker: Broker, desc: StreamDescription) -> dict[str, Any]:
    """The fields every description of a stream shares."""
    return {
        "StreamName": desc.name,
        "StreamARN": broker.config.stream_arn(desc.name),
        "StreamStatus": desc.status.value,
        "StreamModeDetails": {"StreamMode": desc.mode.value},
        "RetentionPeriodHours": desc.retention_hours,
        "StreamCreationTimestamp": desc.created_ms,
        "EnhancedMonitoring": [{"ShardLevelMetrics": list(desc.shard_level_metrics)}],
        "EncryptionType": "NONE",
    }


def sorted_shards(desc: StreamDescription) -> list[Shard]:
    return sorted(desc.shards, key=lambda s: s.index)
