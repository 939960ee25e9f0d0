"""CreateStream, DeleteStream, DescribeStream(Summary), ListStreams, ListShards."""

from __future__ import annotations

import pytest

from broker.errors import (
    ExpiredNextTokenError,
    InvalidArgumentError,
    ResourceInUseError,
    ResourceNotFoundError,
    ShardlineError,
    ValidationError,
)
from broker.model import MAX_HASH_KEY
from broker.operations.streams import ON_DEMAND_SHARDS

from .conftest import START_MS, Harness

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/"


async def test_create_and_describe(ops: Harness) -> None:
    assert await ops("CreateStream", StreamName="s", ShardCount=3) == {}
    desc = (await ops("DescribeStream", StreamName="s"))["StreamDescription"]
    assert desc["StreamName"] == "s"
    assert desc["StreamARN"] == ARN + "s"
    assert desc["StreamStatus"] == "ACTIVE"
    assert desc["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert desc["RetentionPeriodHours"] == 24
    assert desc["StreamCreationTimestamp"] == START_MS
    assert desc["EncryptionType"] == "NONE"
    assert desc["HasMoreShards"] is False
    shards = desc["Shards"]
    assert [s["ShardId"] for s in shards] == [f"shardId-00000000000{i}" for i in range(3)]
    assert shards[0]["HashKeyRange"]["StartingHashKey"] == "0"
    assert shards[-1]["HashKeyRange"]["EndingHashKey"] == str(MAX_HASH_KEY)
    assert shards[1]["SequenceNumberRange"] == {
        "StartingSequenceNumber": str((1 << 96) | (1 << 64))
    }
    assert "ParentShardId" not in shards[0]


async def test_create_options(ops: Harness) -> None:
    await ops(
        "CreateStream",
        StreamName="od",
        StreamModeDetails={"StreamMode": "ON_DEMAND"},
        Tags={"team": "x"},
        RetentionPeriodHours=48,
        MaxRecordSizeInKiB=2048,
    )
    summary = (await ops("DescribeStreamSummary", StreamName="od"))["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == ON_DEMAND_SHARDS
    assert summary["ConsumerCount"] == 0
    assert summary["RetentionPeriodHours"] == 48
    assert "Shards" not in summary


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"ShardCount": 1}, ValidationError),
        ({"StreamName": 7, "ShardCount": 1}, ValidationError),
        ({"StreamName": "bad name", "ShardCount": 1}, InvalidArgumentError),
        ({"StreamName": "x" * 129, "ShardCount": 1}, InvalidArgumentError),
        ({"StreamName": "s"}, InvalidArgumentError),
        ({"StreamName": "s", "ShardCount": "2"}, ValidationError),
        ({"StreamName": "s", "ShardCount": True}, ValidationError),
        ({"StreamName": "s", "ShardCount": 0}, InvalidArgumentError),
        ({"StreamName": "s", "ShardCount": 65}, InvalidArgumentError),
        ({"StreamName": "s", "ShardCount": 1, "StreamModeDetails": "ON_DEMAND"}, ValidationError),
        (
            {"StreamName": "s", "ShardCount": 1, "StreamModeDetails": {"StreamMode": "X"}},
            InvalidArgumentError,
        ),
        ({"StreamName": "s", "ShardCount": 1, "StreamModeDetails": {}}, ValidationError),
        ({"StreamName": "s", "ShardCount": 1, "Tags": {"a": 1}}, ValidationError),
        ({"StreamName": "s", "ShardCount": 1, "RetentionPeriodHours": 1}, InvalidArgumentError),
        ({"StreamName": "s", "ShardCount": 1, "MaxRecordSizeInKiB": 1}, InvalidArgumentError),
    ],
)
async def test_create_errors(
    ops: Harness, request_: dict[str, object], error: type[ShardlineError]
) -> None:
    with pytest.raises(error) as info:
        await ops("CreateStream", **request_)
    assert info.value.http_status == 400


async def test_create_duplicate(ops: Harness) -> None:
    await ops.create("s")
    with pytest.raises(ResourceInUseError):
        await ops.create("s")


async def test_delete(ops: Harness) -> None:
    await ops.create("s")
    assert await ops("DeleteStream", StreamName="s", EnforceConsumerDeletion=True) == {}
    with pytest.raises(ResourceNotFoundError):
        await ops("DescribeStream", StreamName="s")
    with pytest.raises(ResourceNotFoundError):
        await ops("DeleteStream", StreamName="s")
    with pytest.raises(ValidationError):
        await ops("DeleteStream", StreamName="s", EnforceConsumerDeletion="yes")


async def test_arn_addressing(ops: Harness) -> None:
    await ops.create("s")
    summary = await ops("DescribeStreamSummary", StreamARN=ARN + "s")
    assert summary["StreamDescriptionSummary"]["StreamName"] == "s"
    both = await ops("DescribeStreamSummary", StreamName="s", StreamARN=ARN + "s")
    assert both == summary
    with pytest.raises(InvalidArgumentError, match="different streams"):
        await ops("DescribeStreamSummary", StreamName="t", StreamARN=ARN + "s")
    with pytest.raises(ResourceNotFoundError, match="region"):
        await ops("DescribeStream", StreamARN="arn:aws:kinesis:eu-west-1:000000000000:stream/s")
    with pytest.raises(ResourceNotFoundError):
        await ops("DescribeStream", StreamARN="arn:aws:kinesis:us-east-1:123456789012:stream/s")
    with pytest.raises(InvalidArgumentError, match="StreamARN"):
        await ops("DescribeStream", StreamARN="arn:aws:sqs:us-east-1:000000000000:queue/s")
    with pytest.raises(ValidationError, match="StreamName or StreamARN"):
        await ops("DescribeStream")
    await ops("DeleteStream", StreamARN=ARN + "s")
    with pytest.raises(ResourceNotFoundError):
        await ops("DescribeStream", StreamARN=ARN + "s")


async def test_describe_pagination(ops: Harness) -> None:
    await ops.create("s", 5)
    page = (await ops("DescribeStream", StreamName="s", Limit=2))["StreamDescription"]
    assert [s["ShardId"][-1] for s in page["Shards"]] == ["0", "1"]
    assert page["HasMoreShards"] is True
    rest = (
        await ops(
            "DescribeStream",
            StreamName="s",
            Limit=100,
            ExclusiveStartShardId="shardId-000000000001",
        )
    )["StreamDescription"]
    assert [s["ShardId"][-1] for s in rest["Shards"]] == ["2", "3", "4"]
    assert rest["HasMoreShards"] is False
    for bad in (0, 101):
        with pytest.raises(InvalidArgumentError, match="Limit"):
            await ops("DescribeStream", StreamName="s", Limit=bad)
    with pytest.raises(InvalidArgumentError, match="ExclusiveStartShardId"):
        await ops("DescribeStream", StreamName="s", ExclusiveStartShardId="shard-1")


async def test_list_streams(ops: Harness) -> None:
    empty = await ops("ListStreams")
    assert empty == {"StreamNames": [], "HasMoreStreams": False, "StreamSummaries": []}
    for name in ("c", "a", "b"):
        await ops.create(name, 1)
    first = await ops("ListStreams", Limit=2)
    assert first["StreamNames"] == ["a", "b"]
    assert first["HasMoreStreams"] is True
    assert first["StreamSummaries"][0]["StreamARN"] == ARN + "a"
    assert first["StreamSummaries"][0]["StreamStatus"] == "ACTIVE"
    second = await ops("ListStreams", NextToken=first["NextToken"])
    assert second["StreamNames"] == ["c"]
    assert second["HasMoreStreams"] is False
    assert "NextToken" not in second
    after = await ops("ListStreams", ExclusiveStartStreamName="a")
    assert after["StreamNames"] == ["b", "c"]
    with pytest.raises(InvalidArgumentError):
        await ops("ListStreams", NextToken=first["NextToken"], ExclusiveStartStreamName="a")
    with pytest.raises(InvalidArgumentError, match="NextToken"):
        await ops("ListStreams", NextToken="garbage")
    with pytest.raises(InvalidArgumentError, match="Limit"):
        await ops("ListStreams", Limit=0)
    ops.clock.advance(300_001)
    with pytest.raises(ExpiredNextTokenError):
        await ops("ListStreams", NextToken=first["NextToken"])


async def test_list_shards_pages(ops: Harness) -> None:
    await ops.create("s", 5)
    first = await ops("ListShards", StreamName="s", MaxResults=2)
    assert [s["ShardId"][-1] for s in first["Shards"]] == ["0", "1"]
    second = await ops("ListShards", NextToken=first["NextToken"], MaxResults=2)
    assert [s["ShardId"][-1] for s in second["Shards"]] == ["2", "3"]
    third = await ops("ListShards", NextToken=second["NextToken"])
    assert [s["ShardId"][-1] for s in third["Shards"]] == ["4"]
    assert "NextToken" not in third
    by_arn = await ops(
        "ListShards", StreamARN=ARN + "s", ExclusiveStartShardId="shardId-000000000003"
    )
    assert [s["ShardId"][-1] for s in by_arn["Shards"]] == ["4"]
    with pytest.raises(InvalidArgumentError, match="cannot be combined"):
        await ops("ListShards", StreamName="s", NextToken=first["NextToken"])
    with pytest.raises(InvalidArgumentError, match="cannot be combined"):
        await ops("ListShards", NextToken=first["NextToken"], ShardFilter={"Type": "AT_LATEST"})
    with pytest.raises(InvalidArgumentError, match="MaxResults"):
        await ops("ListShards", StreamName="s", MaxResults=10_001)
    with pytest.raises(ResourceNotFoundError):
        await ops("ListShards", StreamName="s", StreamCreationTimestamp=1)
    same = await ops("ListShards", StreamName="s", StreamCreationTimestamp=START_MS)
    assert len(same["Shards"]) == 5
    ops.clock.advance(300_001)
    with pytest.raises(ExpiredNextTokenError):
        await ops("ListShards", NextToken=first["NextToken"])


async def test_list_shards_token_of_deleted_stream(ops: Harness) -> None:
    await ops.create("s", 3)
    first = await ops("ListShards", StreamName="s", MaxResults=1)
    await ops("DeleteStream", StreamName="s")
    await ops.create("s", 3)
    with pytest.raises(ResourceNotFoundError):
        await ops("ListShards", NextToken=first["NextToken"])
    await ops.create("t", 1)
    streams_token = (await ops("ListStreams", Limit=1))["NextToken"]
    with pytest.raises(InvalidArgumentError, match="not a ListShards token"):
        await ops("ListShards", NextToken=streams_token)
    with pytest.raises(InvalidArgumentError, match="not a ListStreams token"):
        await ops("ListStreams", NextToken=first["NextToken"])


async def test_list_shards_filters(ops: Harness) -> None:
    await ops.create("s", 2)
    ops.clock.advance(1000)
    await ops(
        "SplitShard",
        StreamName="s",
        ShardToSplit="shardId-000000000000",
        NewStartingHashKey=str(1 << 100),
    )
    split_ms = ops.clock.now

    async def ids(**shard_filter: object) -> list[str]:
        out = await ops("ListShards", StreamName="s", ShardFilter=shard_filter)
        return [s["ShardId"][-1] for s in out["Shards"]]

    assert await ids(Type="FROM_TRIM_HORIZON") == ["0", "1", "2", "3"]
    assert await ids(Type="AT_TRIM_HORIZON") == ["0", "1"]
    assert await ids(Type="AT_LATEST") == ["1", "2", "3"]
    assert await ids(Type="AFTER_SHARD_ID", ShardId="shardId-000000000001") == ["2", "3"]
    assert await ids(Type="AT_TIMESTAMP", Timestamp=split_ms - 1) == ["0", "1"]
    assert await ids(Type="AT_TIMESTAMP", Timestamp=split_ms) == ["1", "2", "3"]
    assert await ids(Type="FROM_TIMESTAMP", Timestamp=split_ms - 1) == ["0", "1", "2", "3"]
    assert await ids(Type="FROM_TIMESTAMP", Timestamp=split_ms + 5) == ["1", "2", "3"]
    out = await ops("ListShards", StreamName="s", ShardFilter={"Type": "AT_LATEST"})
    child = out["Shards"][1]
    assert child["ParentShardId"] == "shardId-000000000000"
    with pytest.raises(InvalidArgumentError, match="ShardId"):
        await ids(Type="AFTER_SHARD_ID")
    with pytest.raises(InvalidArgumentError, match="Timestamp"):
        await ids(Type="AT_TIMESTAMP")
    with pytest.raises(InvalidArgumentError, match="Type"):
        await ids(Type="SOMETIMES")
    with pytest.raises(ValidationError):
        await ops("ListShards", StreamName="s", ShardFilter=["AT_LATEST"])


async def test_unknown_stream_everywhere(ops: Harness) -> None:
    for name in ("DescribeStream", "DescribeStreamSummary", "ListShards", "DeleteStream"):
        with pytest.raises(ResourceNotFoundError):
            await ops(name, StreamName="nope")
