"""SplitShard, MergeShards, UpdateShardCount and the retention periods."""

from __future__ import annotations

import pytest

from broker.errors import (
    InvalidArgumentError,
    LimitExceededError,
    ResourceInUseError,
    ResourceNotFoundError,
    ValidationError,
)

from .conftest import Harness

S0, S1, S2 = (f"shardId-{i:012d}" for i in range(3))


async def shards(ops: Harness) -> list[dict[str, object]]:
    out = await ops("ListShards", StreamName="s")
    result: list[dict[str, object]] = out["Shards"]
    return result


async def test_split(ops: Harness) -> None:
    await ops.create("s", 1)
    key = 1 << 127
    assert (
        await ops("SplitShard", StreamName="s", ShardToSplit=S0, NewStartingHashKey=str(key)) == {}
    )
    listed = await shards(ops)
    assert [s["ShardId"] for s in listed] == [S0, S1, S2]
    assert "EndingSequenceNumber" in listed[0]["SequenceNumberRange"]  # type: ignore[operator]
    assert listed[1]["ParentShardId"] == S0
    assert listed[1]["HashKeyRange"] == {"StartingHashKey": "0", "EndingHashKey": str(key - 1)}
    assert listed[2]["HashKeyRange"]["StartingHashKey"] == str(key)  # type: ignore[index]
    with pytest.raises(ResourceInUseError):
        await ops("SplitShard", StreamName="s", ShardToSplit=S0, NewStartingHashKey=str(key))


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"NewStartingHashKey": "5"}, ValidationError),
        ({"ShardToSplit": S0}, ValidationError),
        ({"ShardToSplit": S0, "NewStartingHashKey": 5}, ValidationError),
        ({"ShardToSplit": S0, "NewStartingHashKey": "abc"}, InvalidArgumentError),
        ({"ShardToSplit": S0, "NewStartingHashKey": "0"}, InvalidArgumentError),
        ({"ShardToSplit": S0, "NewStartingHashKey": str(1 << 128)}, InvalidArgumentError),
        ({"ShardToSplit": "nope", "NewStartingHashKey": "5"}, InvalidArgumentError),
        (
            {"ShardToSplit": "shardId-000000000007", "NewStartingHashKey": "5"},
            ResourceNotFoundError,
        ),
    ],
)
async def test_split_errors(ops: Harness, request_: dict[str, object], error: type) -> None:
    await ops.create("s", 1)
    with pytest.raises(error):
        await ops("SplitShard", StreamName="s", **request_)


async def test_merge(ops: Harness) -> None:
    await ops.create("s", 2)
    assert await ops("MergeShards", StreamName="s", ShardToMerge=S0, AdjacentShardToMerge=S1) == {}
    listed = await shards(ops)
    child = listed[2]
    assert child["ParentShardId"] == S0 and child["AdjacentParentShardId"] == S1
    with pytest.raises(ResourceInUseError):
        await ops("MergeShards", StreamName="s", ShardToMerge=S0, AdjacentShardToMerge=S1)


async def test_merge_errors(ops: Harness) -> None:
    await ops.create("s", 3)
    with pytest.raises(InvalidArgumentError):
        await ops("MergeShards", StreamName="s", ShardToMerge=S0, AdjacentShardToMerge=S2)
    with pytest.raises(InvalidArgumentError):
        await ops("MergeShards", StreamName="s", ShardToMerge=S0, AdjacentShardToMerge=S0)
    with pytest.raises(ValidationError):
        await ops("MergeShards", StreamName="s", ShardToMerge=S0)
    with pytest.raises(ResourceNotFoundError):
        await ops("MergeShards", StreamName="t", ShardToMerge=S0, AdjacentShardToMerge=S1)


async def test_update_shard_count(ops: Harness) -> None:
    await ops.create("s", 2)
    out = await ops(
        "UpdateShardCount", StreamName="s", TargetShardCount=4, ScalingType="UNIFORM_SCALING"
    )
    assert out == {
        "StreamName": "s",
        "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/s",
        "CurrentShardCount": 2,
        "TargetShardCount": 4,
    }
    summary = await ops("DescribeStreamSummary", StreamName="s")
    assert summary["StreamDescriptionSummary"]["OpenShardCount"] == 4
    out = await ops(
        "UpdateShardCount", StreamName="s", TargetShardCount=3, ScalingType="UNIFORM_SCALING"
    )
    assert (out["CurrentShardCount"], out["TargetShardCount"]) == (4, 3)
    with pytest.raises(InvalidArgumentError, match="ScalingType"):
        await ops("UpdateShardCount", StreamName="s", TargetShardCount=3, ScalingType="OTHER")
    with pytest.raises(ValidationError, match="ScalingType"):
        await ops("UpdateShardCount", StreamName="s", TargetShardCount=3)
    with pytest.raises(InvalidArgumentError, match="TargetShardCount"):
        await ops(
            "UpdateShardCount", StreamName="s", TargetShardCount=0, ScalingType="UNIFORM_SCALING"
        )
    with pytest.raises((InvalidArgumentError, LimitExceededError)):
        await ops(
            "UpdateShardCount", StreamName="s", TargetShardCount=7, ScalingType="UNIFORM_SCALING"
        )


async def test_retention(ops: Harness) -> None:
    await ops.create("s", 1)

    async def hours() -> int:
        out = await ops("DescribeStreamSummary", StreamName="s")
        value: int = out["StreamDescriptionSummary"]["RetentionPeriodHours"]
        return value

    assert await ops("IncreaseStreamRetentionPeriod", StreamName="s", RetentionPeriodHours=48) == {}
    assert await hours() == 48
    with pytest.raises(InvalidArgumentError, match="Decrease"):
        await ops("IncreaseStreamRetentionPeriod", StreamName="s", RetentionPeriodHours=30)
    assert await ops("DecreaseStreamRetentionPeriod", StreamName="s", RetentionPeriodHours=30) == {}
    assert await hours() == 30
    with pytest.raises(InvalidArgumentError, match="Increase"):
        await ops("DecreaseStreamRetentionPeriod", StreamName="s", RetentionPeriodHours=40)
    for bad in (23, 8761):
        with pytest.raises(InvalidArgumentError, match="RetentionPeriodHours"):
            await ops("IncreaseStreamRetentionPeriod", StreamName="s", RetentionPeriodHours=bad)
    with pytest.raises(ValidationError):
        await ops("IncreaseStreamRetentionPeriod", StreamName="s", RetentionPeriodHours="48")
    with pytest.raises(ValidationError):
        await ops("DecreaseStreamRetentionPeriod", StreamName="s")
    with pytest.raises(ResourceNotFoundError):
        await ops("DecreaseStreamRetentionPeriod", StreamName="x", RetentionPeriodHours=24)
