"""Stream operations: create, delete, describe, list streams and list shards.

Listings are ordered (streams by name, shards by index) so that pagination is
a position in a sorted list: ``ExclusiveStartStreamName`` /
``ExclusiveStartShardId`` or a signed ``NextToken`` carrying the last entry
returned (``iterators.py``).
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidArgumentError, ResourceNotFoundError
from ..log.catalog import MAX_RECORD_KIB, MIN_RECORD_KIB
from ..model import Shard, StreamDescription, StreamMode, validate_stream_name
from . import fields as f
from .base import Broker, Request, Response, operation
from .shapes import codec, record_limit, shard_view, sorted_shards, summary_fields
from .stream_settings import stream_mode
from .tags import tag_map

#: Shards of a stream created ``ON_DEMAND`` (the catalog has no automatic scaling).
ON_DEMAND_SHARDS = 4
SHARD_FILTERS = (
    "AFTER_SHARD_ID",
    "AT_TRIM_HORIZON",
    "FROM_TRIM_HORIZON",
    "AT_LATEST",
    "AT_TIMESTAMP",
    "FROM_TIMESTAMP",
)


@operation("CreateStream")
async def create_stream(broker: Broker, request: Request) -> Response:
    name = validate_stream_name(f.required_str(request, "StreamName", max_len=128))
    mode = stream_mode(f.optional_map(request, "StreamModeDetails")) or StreamMode.PROVISIONED
    limit = broker.log.config.max_shards_per_stream
    count = f.optional_int(request, "ShardCount", low=1, high=limit)
    if count is None:
        if mode == StreamMode.PROVISIONED:
            raise InvalidArgumentError("ShardCount is required for a PROVISIONED stream")
        count = min(ON_DEMAND_SHARDS, limit)
    retention = f.optional_int(request, "RetentionPeriodHours", default=24)
    assert retention is not None
    tags = tag_map(request, required=False)
    max_kib = f.optional_int(request, "MaxRecordSizeInKiB", low=MIN_RECORD_KIB, high=MAX_RECORD_KIB)
    await broker.log.create_stream(
        name, count, retention_hours=retention, mode=mode, tags=tags, max_record_kib=max_kib
    )
    return {}


@operation("DeleteStream")
async def delete_stream(broker: Broker, request: Request) -> Response:
    name = f.required_stream(broker.config, request)
    # Refused while consumers are registered, unless they are to go with the stream.
    enforce = f.optional_bool(request, "EnforceConsumerDeletion")
    await broker.log.delete_stream(name, enforce_consumer_deletion=enforce)
    return {}


@operation("DescribeStream")
async def describe_stream(broker: Broker, request: Request) -> Response:
    name = f.required_stream(broker.config, request)
    limit = f.optional_int(request, "Limit", default=100, low=1, high=100)
    assert limit is not None
    after = f.optional_shard(request, "ExclusiveStartShardId")
    desc = broker.log.describe(name)
    shards = [s for s in sorted_shards(desc) if after is None or s.index > after]
    description = summary_fields(broker, desc)
    description["Shards"] = [shard_view(desc, s) for s in shards[:limit]]
    description["HasMoreShards"] = len(shards) > limit
    return {"StreamDescription": description}


@operation("DescribeStreamSummary")
async def describe_stream_summary(broker: Broker, request: Request) -> Response:
    desc = broker.log.describe(f.required_stream(broker.config, request))
    summary = summary_fields(broker, desc)
    summary["OpenShardCount"] = len(desc.open_shards)
    summary["ConsumerCount"] = len(broker.log.list_consumers(desc.name))
    summary["MaxRecordSizeInKiB"] = record_limit(broker.config, desc) // 1024
    return {"StreamDescriptionSummary": summary}


@operation("ListStreams")
async def list_streams(broker: Broker, request: Request) -> Response:
    limit = f.optional_int(request, "Limit", default=100, low=1, high=10_000)
    assert limit is not None
    start = f.optional_str(request, "ExclusiveStartStreamName", max_len=128)
    token = f.optional_str(request, "NextToken")
    now = broker.log.now_ms()
    if token is not None:
        if start is not None:
            raise InvalidArgumentError("NextToken and ExclusiveStartStreamName cannot be combined")
        state = codec(broker).decode_page(token, now)
        if len(state) != 2 or state[0] != "streams" or not isinstance(state[1], str):
            raise InvalidArgumentError("NextToken is not valid: it is not a ListStreams token")
        start = state[1]
    names = [n for n in broker.log.list_streams() if start is None or n > start]
    page, more = names[:limit], len(names) > limit
    summaries = []
    for name in page:
        try:
            desc = broker.log.describe(name)
        except ResourceNotFoundError:
            continue
        fields = summary_fields(broker, desc)
        summaries.append(
            {
                k: fields[k]
                for k in (
                    "StreamName",
                    "StreamARN",
                    "StreamStatus",
                    "StreamModeDetails",
                    "StreamCreationTimestamp",
                )
            }
        )
    response: Response = {
        "StreamNames": page,
        "HasMoreStreams": more,
        "StreamSummaries": summaries,
    }
    if more:
        response["NextToken"] = codec(broker).encode_page(["streams", page[-1]], now)
    return response


# -- ListShards -------------------------------------------------------------------


def _closed_ms(desc: StreamDescription, shard: Shard) -> int | None:
    """When a closed shard was closed: its children's creation time."""
    if shard.is_open:
        return None
    return min((c.created_ms for c in desc.children_of(shard.index)), default=shard.created_ms)


def _filtered(
    desc: StreamDescription, kind: str, after: int | None, timestamp: int | None
) -> list[Shard]:
    shards = sorted_shards(desc)
    if kind == "AFTER_SHARD_ID":
        return [s for s in shards if after is None or s.index > after]
    if kind == "AT_TRIM_HORIZON":
        # Shards are never expired from the catalog, so the horizon is the creation.
        return [s for s in shards if not s.parents]
    if kind == "AT_LATEST":
        return [s for s in shards if s.is_open]
    if kind in ("AT_TIMESTAMP", "FROM_TIMESTAMP"):
        assert timestamp is not None
        out = []
        for shard in shards:
            closed = _closed_ms(desc, shard)
            if closed is not None and closed <= timestamp:
                continue
            if kind == "AT_TIMESTAMP" and shard.created_ms > timestamp and shard.parents:
                continue
            out.append(shard)
        return out
    return shards  # FROM_TRIM_HORIZON


def _shard_filter(request: Request) -> tuple[str, int | None, int | None]:
    spec = f.optional_map(request, "ShardFilter")
    if spec is None:
        return "FROM_TRIM_HORIZON", None, None
    kind = f.required_choice(spec, "Type", SHARD_FILTERS)
    after = f.optional_shard(spec, "ShardId")
    timestamp = f.optional_int(spec, "Timestamp", low=0)
    if kind == "AFTER_SHARD_ID" and after is None:
        raise InvalidArgumentError("ShardFilter of Type AFTER_SHARD_ID needs a ShardId")
    if kind in ("AT_TIMESTAMP", "FROM_TIMESTAMP") and timestamp is None:
        raise InvalidArgumentError(f"ShardFilter of Type {kind} needs a Timestamp")
    return kind, after, timestamp


@operation("ListShards")
async def list_shards(broker: Broker, request: Request) -> Response:
    limit = f.optional_int(request, "MaxResults", default=1000, low=1, high=10_000)
    assert limit is not None
    token = f.optional_str(request, "NextToken")
    now = broker.log.now_ms()
    if token is not None:
        for other in ("StreamName", "StreamARN", "ExclusiveStartShardId", "ShardFilter"):
            if request.get(other) is not None:
                raise InvalidArgumentError(f"NextToken and {other} cannot be combined")
        if request.get("StreamCreationTimestamp") is not None:
            raise InvalidArgumentError("NextToken and StreamCreationTimestamp cannot be combined")
        state = codec(broker).decode_page(token, now)
        if len(state) != 7 or state[0] != "shards":
            raise InvalidArgumentError("NextToken is not valid: it is not a ListShards token")
        _, name, incarnation, last, kind, after, timestamp = state
        desc = broker.log.describe(name)
        if desc.incarnation != incarnation:
            raise ResourceNotFoundError(f"Stream {name} was deleted since the NextToken was issued")
    else:
        name = f.required_stream(broker.config, request)
        start = f.optional_shard(request, "ExclusiveStartShardId")
        created = f.optional_int(request, "StreamCreationTimestamp")
        kind, after, timestamp = _shard_filter(request)
        desc = broker.log.describe(name)
        if created is not None and created != desc.created_ms:
            raise ResourceNotFoundError(
                f"Stream {name} created at {created} not found (it was created at "
                f"{desc.created_ms})"
            )
        last = -1 if start is None else start
    shards = [s for s in _filtered(desc, kind, after, timestamp) if s.index > last]
    page = shards[:limit]
    response: dict[str, Any] = {"Shards": [shard_view(desc, s) for s in page]}
    if len(shards) > limit:
        response["NextToken"] = codec(broker).encode_page(
            ["shards", desc.name, desc.incarnation, page[-1].index, kind, after, timestamp], now
        )
    return response
