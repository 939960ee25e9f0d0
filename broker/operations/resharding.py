"""Resharding and retention: SplitShard, MergeShards, UpdateShardCount, retention periods.

The catalog (``broker.log.catalog``) owns the rules (split key bounds,
adjacency, the half-to-double range of uniform scaling, retention bounds);
these handlers read and type-check the fields and answer as Kinesis does:
empty responses, except ``UpdateShardCount``'s counts. Resharding is done
when the response is sent: the stream stays ``ACTIVE``.
"""

from __future__ import annotations

from ..errors import InvalidArgumentError
from ..hashing import parse_explicit_hash_key
from ..log.catalog import MAX_RETENTION_HOURS, MIN_RETENTION_HOURS
from . import fields as f
from .base import Broker, Request, Response, operation


def _hash_key(request: Request, name: str) -> int:
    text = f.required_str(request, name)
    try:
        return parse_explicit_hash_key(text)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(exc.message.replace("ExplicitHashKey", name, 1)) from None


@operation("SplitShard")
async def split_shard(broker: Broker, request: Request) -> Response:
    name = f.required_stream(broker.config, request)
    index = f.required_shard(request, "ShardToSplit")
    key = _hash_key(request, "NewStartingHashKey")
    await broker.log.split_shard(name, index, key)
    return {}


@operation("MergeShards")
async def merge_shards(broker: Broker, request: Request) -> Response:
    name = f.required_stream(broker.config, request)
    index = f.required_shard(request, "ShardToMerge")
    adjacent = f.required_shard(request, "AdjacentShardToMerge")
    await broker.log.merge_shards(name, index, adjacent)
    return {}


@operation("UpdateShardCount")
async def update_shard_count(broker: Broker, request: Request) -> Response:
    name = f.required_stream(broker.config, request)
    target = f.required_int(request, "TargetShardCount", low=1)
    f.required_choice(request, "ScalingType", ("UNIFORM_SCALING",))
    current = len(broker.log.describe(name).open_shards)
    desc = await broker.log.update_shard_count(name, target)
    return {
        "StreamName": desc.name,
        "StreamARN": broker.config.stream_arn(desc.name),
        "CurrentShardCount": current,
        "TargetShardCount": len(desc.open_shards),
    }


def _hours(request: Request) -> int:
    return f.required_int(
        request, "RetentionPeriodHours", low=MIN_RETENTION_HOURS, high=MAX_RETENTION_HOURS
    )


@operation("IncreaseStreamRetentionPeriod")
async def increase_retention(broker: Broker, request: Request) -> Response:
    name = f.required_stream(broker.config, request)
    await broker.log.increase_retention(name, _hours(request))
    return {}


@operation("DecreaseStreamRetentionPeriod")
async def decrease_retention(broker: Broker, request: Request) -> Response:
    name = f.required_stream(broker.config, request)
    await broker.log.decrease_retention(name, _hours(request))
    return {}
