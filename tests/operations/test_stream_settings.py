"""UpdateStreamMode, Enable/DisableEnhancedMonitoring, UpdateMaxRecordSize,
Start/StopStreamEncryption and DescribeLimits.

Each setting shows in the descriptions, survives a restart, and a data
directory whose catalog records predate these settings opens with their
defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest

from broker.errors import (
    InvalidArgumentError,
    ResourceNotFoundError,
    ShardlineError,
    ValidationError,
)
from broker.log import keys as log_keys
from broker.log.catalog import SHARD_LEVEL_METRICS
from broker.log.env import LogEnvironment
from broker.operations.stream_settings import UNLIMITED

from .conftest import Harness, make_config, open_harness

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/"
MIB = 1 << 20
KIB = 1 << 10


async def summary(ops: Harness, stream: str = "s") -> dict[str, Any]:
    out: dict[str, Any] = (await ops("DescribeStreamSummary", StreamName=stream))[
        "StreamDescriptionSummary"
    ]
    return out


async def description(ops: Harness, stream: str = "s") -> dict[str, Any]:
    out: dict[str, Any] = (await ops("DescribeStream", StreamName=stream))["StreamDescription"]
    return out


async def listed_mode(ops: Harness, stream: str = "s") -> str:
    out = await ops("ListStreams")
    (entry,) = [e for e in out["StreamSummaries"] if e["StreamName"] == stream]
    mode: str = entry["StreamModeDetails"]["StreamMode"]
    return mode


# -- stream mode ----------------------------------------------------------------------


async def test_create_keeps_the_mode(ops: Harness) -> None:
    await ops("CreateStream", StreamName="od", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    await ops("CreateStream", StreamName="pr", ShardCount=1)
    await ops(
        "CreateStream",
        StreamName="pr2",
        ShardCount=1,
        StreamModeDetails={"StreamMode": "PROVISIONED"},
    )
    for name, mode in (("od", "ON_DEMAND"), ("pr", "PROVISIONED"), ("pr2", "PROVISIONED")):
        assert (await summary(ops, name))["StreamModeDetails"] == {"StreamMode": mode}
        assert (await description(ops, name))["StreamModeDetails"] == {"StreamMode": mode}
        assert await listed_mode(ops, name) == mode


async def test_update_stream_mode(ops: Harness) -> None:
    await ops.create("s", 3)
    shards = (await description(ops))["Shards"]
    out = await ops(
        "UpdateStreamMode", StreamARN=ARN + "s", StreamModeDetails={"StreamMode": "ON_DEMAND"}
    )
    assert out == {}
    assert (await summary(ops))["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert (await summary(ops))["StreamStatus"] == "ACTIVE"
    assert await listed_mode(ops) == "ON_DEMAND"
    # A label only: no shard changed.
    assert (await description(ops))["Shards"] == shards
    # The same mode again changes nothing; by name works too.
    await ops("UpdateStreamMode", StreamName="s", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert await listed_mode(ops) == "ON_DEMAND"
    await ops("UpdateStreamMode", StreamName="s", StreamModeDetails={"StreamMode": "PROVISIONED"})
    assert await listed_mode(ops) == "PROVISIONED"


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"StreamARN": ARN + "s"}, ValidationError),
        ({"StreamARN": ARN + "s", "StreamModeDetails": "ON_DEMAND"}, ValidationError),
        ({"StreamARN": ARN + "s", "StreamModeDetails": {}}, ValidationError),
        (
            {"StreamARN": ARN + "s", "StreamModeDetails": {"StreamMode": "AUTO"}},
            InvalidArgumentError,
        ),
        ({"StreamModeDetails": {"StreamMode": "ON_DEMAND"}}, ValidationError),
        (
            {"StreamARN": ARN + "x", "StreamModeDetails": {"StreamMode": "ON_DEMAND"}},
            ResourceNotFoundError,
        ),
    ],
)
async def test_update_stream_mode_errors(
    ops: Harness, request_: dict[str, Any], error: type[ShardlineError]
) -> None:
    await ops.create("s", 1)
    with pytest.raises(error):
        await ops("UpdateStreamMode", **request_)
    assert await listed_mode(ops) == "PROVISIONED"


# -- enhanced monitoring --------------------------------------------------------------


async def monitored(ops: Harness) -> list[str]:
    (entry,) = (await summary(ops))["EnhancedMonitoring"]
    metrics: list[str] = entry["ShardLevelMetrics"]
    assert (await description(ops))["EnhancedMonitoring"] == [{"ShardLevelMetrics": metrics}]
    return metrics


async def test_enhanced_monitoring(ops: Harness) -> None:
    await ops.create("s", 1)
    assert await monitored(ops) == []
    out = await ops(
        "EnableEnhancedMonitoring",
        StreamName="s",
        ShardLevelMetrics=["OutgoingBytes", "IncomingBytes"],
    )
    assert out == {
        "StreamName": "s",
        "StreamARN": ARN + "s",
        "CurrentShardLevelMetrics": [],
        "DesiredShardLevelMetrics": ["IncomingBytes", "OutgoingBytes"],
    }
    assert await monitored(ops) == ["IncomingBytes", "OutgoingBytes"]
    # Enabling adds to what is on, and one already on is no change.
    out = await ops(
        "EnableEnhancedMonitoring",
        StreamARN=ARN + "s",
        ShardLevelMetrics=["IncomingBytes", "IteratorAgeMilliseconds"],
    )
    assert out["CurrentShardLevelMetrics"] == ["IncomingBytes", "OutgoingBytes"]
    assert out["DesiredShardLevelMetrics"] == [
        "IncomingBytes",
        "OutgoingBytes",
        "IteratorAgeMilliseconds",
    ]
    out = await ops(
        "DisableEnhancedMonitoring", StreamName="s", ShardLevelMetrics=["OutgoingBytes"]
    )
    assert out["DesiredShardLevelMetrics"] == ["IncomingBytes", "IteratorAgeMilliseconds"]
    assert await monitored(ops) == ["IncomingBytes", "IteratorAgeMilliseconds"]


async def test_all_is_every_metric(ops: Harness) -> None:
    await ops.create("s", 1)
    out = await ops("EnableEnhancedMonitoring", StreamName="s", ShardLevelMetrics=["ALL"])
    assert out["DesiredShardLevelMetrics"] == list(SHARD_LEVEL_METRICS)
    assert len(SHARD_LEVEL_METRICS) == 7
    assert await monitored(ops) == list(SHARD_LEVEL_METRICS)
    out = await ops(
        "DisableEnhancedMonitoring", StreamName="s", ShardLevelMetrics=["ALL", "IncomingBytes"]
    )
    assert out["CurrentShardLevelMetrics"] == list(SHARD_LEVEL_METRICS)
    assert out["DesiredShardLevelMetrics"] == []
    assert await monitored(ops) == []


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"StreamName": "s"}, ValidationError),
        ({"StreamName": "s", "ShardLevelMetrics": "ALL"}, ValidationError),
        ({"StreamName": "s", "ShardLevelMetrics": [7]}, ValidationError),
        ({"StreamName": "s", "ShardLevelMetrics": []}, InvalidArgumentError),
        ({"StreamName": "s", "ShardLevelMetrics": ["IncomingBytes"] * 8}, InvalidArgumentError),
        ({"StreamName": "s", "ShardLevelMetrics": ["incomingbytes"]}, InvalidArgumentError),
        ({"StreamName": "s", "ShardLevelMetrics": ["IncomingBytes", "Cpu"]}, InvalidArgumentError),
        ({"ShardLevelMetrics": ["ALL"]}, ValidationError),
        ({"StreamName": "x", "ShardLevelMetrics": ["ALL"]}, ResourceNotFoundError),
    ],
)
@pytest.mark.parametrize("name", ["EnableEnhancedMonitoring", "DisableEnhancedMonitoring"])
async def test_enhanced_monitoring_errors(
    ops: Harness, name: str, request_: dict[str, Any], error: type[ShardlineError]
) -> None:
    await ops.create("s", 1)
    await ops("EnableEnhancedMonitoring", StreamName="s", ShardLevelMetrics=["IncomingRecords"])
    with pytest.raises(error):
        await ops(name, **request_)
    assert await monitored(ops) == ["IncomingRecords"]


# -- record size ----------------------------------------------------------------------


def record(size: int, key: str = "k") -> dict[str, Any]:
    """A record of ``size`` bytes, data plus key."""
    return {"PartitionKey": key, "Data": b"x" * (size - len(key))}


async def takes(ops: Harness, stream: str, size: int) -> bool:
    """Whether a record of ``size`` bytes is taken by PutRecord and by both PutRecords paths."""
    outcomes = []
    for request in (
        {"StreamName": stream, **record(size)},
        {"StreamName": stream, "Records": [record(size)]},
        # With an ExplicitHashKey, PutRecords takes its general (validating) path.
        {"StreamName": stream, "Records": [{**record(size), "ExplicitHashKey": "1"}]},
    ):
        name = "PutRecords" if "Records" in request else "PutRecord"
        try:
            await ops(name, **request)
        except InvalidArgumentError as exc:
            assert "limit" in exc.message
            outcomes.append(False)
        else:
            outcomes.append(True)
    assert len(set(outcomes)) == 1, outcomes
    return outcomes[0]


async def test_max_record_size_per_stream(tmp_path: Path) -> None:
    overrides = {"max_record_bytes": 3 * MIB, "max_request_records_bytes": 8 * MIB}
    async for ops in open_harness(tmp_path, **overrides):
        await ops.create("s", 1)
        await ops.create("other", 1)
        # No limit of its own: the broker's.
        assert (await summary(ops))["MaxRecordSizeInKiB"] == 3 * KIB
        assert await takes(ops, "s", 2 * MIB)
        assert await ops("UpdateMaxRecordSize", StreamARN=ARN + "s", MaxRecordSizeInKiB=1024) == {}
        assert (await summary(ops))["MaxRecordSizeInKiB"] == 1024
        assert await takes(ops, "s", MIB)
        assert not await takes(ops, "s", MIB + 1)
        # Per stream: the other one still takes the broker's limit.
        assert await takes(ops, "other", 2 * MIB)
        assert (await summary(ops, "other"))["MaxRecordSizeInKiB"] == 3 * KIB
        # Above the broker's limit, the broker's bounds the stream (and is what it reports).
        await ops("UpdateMaxRecordSize", StreamName="s", MaxRecordSizeInKiB=10240)
        assert (await summary(ops))["MaxRecordSizeInKiB"] == 3 * KIB
        assert await takes(ops, "s", 3 * MIB)
        assert not await takes(ops, "s", 3 * MIB + 1)


async def test_create_with_a_max_record_size(tmp_path: Path) -> None:
    async for ops in open_harness(tmp_path, max_record_bytes=2 * MIB):
        await ops("CreateStream", StreamName="s", ShardCount=1, MaxRecordSizeInKiB=1024)
        assert (await summary(ops))["MaxRecordSizeInKiB"] == 1024
        assert not await takes(ops, "s", MIB + 1)


async def test_idempotent_batches_obey_the_stream_limit(tmp_path: Path) -> None:
    async for ops in open_harness(tmp_path, max_record_bytes=2 * MIB):
        await ops("CreateStream", StreamName="s", ShardCount=1, MaxRecordSizeInKiB=1024)
        producer = (await ops("InitProducer"))["ProducerId"]
        batch = {"ProducerId": producer, "ShardId": "shardId-000000000000", "BatchNumber": 0}
        with pytest.raises(InvalidArgumentError, match="limit"):
            await ops("PutRecords", StreamName="s", Records=[record(MIB + 1)], **batch)
        out = await ops("PutRecords", StreamName="s", Records=[record(MIB)], **batch)
        assert out["FailedRecordCount"] == 0


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"StreamName": "s"}, ValidationError),
        ({"StreamName": "s", "MaxRecordSizeInKiB": "1024"}, ValidationError),
        ({"StreamName": "s", "MaxRecordSizeInKiB": 1023}, InvalidArgumentError),
        ({"StreamName": "s", "MaxRecordSizeInKiB": 10241}, InvalidArgumentError),
        ({"MaxRecordSizeInKiB": 1024}, ValidationError),
        ({"StreamARN": ARN + "x", "MaxRecordSizeInKiB": 1024}, ResourceNotFoundError),
    ],
)
async def test_update_max_record_size_errors(
    ops: Harness, request_: dict[str, Any], error: type[ShardlineError]
) -> None:
    await ops.create("s", 1)
    with pytest.raises(error):
        await ops("UpdateMaxRecordSize", **request_)
    assert (await summary(ops))["MaxRecordSizeInKiB"] == 1024


# -- encryption -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["StartStreamEncryption", "StopStreamEncryption"])
async def test_encryption_is_refused(ops: Harness, name: str) -> None:
    await ops.create("s", 1)
    with pytest.raises(InvalidArgumentError, match="server-side encryption is not supported"):
        await ops(name, StreamName="s", EncryptionType="KMS", KeyId="alias/aws/kinesis")
    assert (await summary(ops))["EncryptionType"] == "NONE"
    assert "KeyId" not in await summary(ops)


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"StreamName": "s", "KeyId": "k"}, ValidationError),
        ({"StreamName": "s", "EncryptionType": "KMS"}, ValidationError),
        ({"StreamName": "s", "EncryptionType": "AES", "KeyId": "k"}, InvalidArgumentError),
        ({"StreamName": "s", "EncryptionType": "KMS", "KeyId": "k" * 2049}, InvalidArgumentError),
        ({"StreamName": "x", "EncryptionType": "KMS", "KeyId": "k"}, ResourceNotFoundError),
        ({"EncryptionType": "KMS", "KeyId": "k"}, ValidationError),
    ],
)
@pytest.mark.parametrize("name", ["StartStreamEncryption", "StopStreamEncryption"])
async def test_encryption_errors(
    ops: Harness, name: str, request_: dict[str, Any], error: type[ShardlineError]
) -> None:
    await ops.create("s", 1)
    with pytest.raises(error):
        await ops(name, **request_)


# -- limits ---------------------------------------------------------------------------


async def test_describe_limits(ops: Harness) -> None:
    per_stream = ops.broker.log.config.max_shards_per_stream
    assert await ops("DescribeLimits") == {
        "ShardLimit": per_stream,
        "OpenShardCount": 0,
        "OnDemandStreamCount": 0,
        "OnDemandStreamCountLimit": UNLIMITED,
    }
    await ops.create("a", 3)
    await ops("CreateStream", StreamName="b", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    out = await ops("DescribeLimits")
    assert out["OpenShardCount"] == 3 + 4
    assert out["OnDemandStreamCount"] == 1
    assert out["ShardLimit"] == 3 * per_stream
    # A split opens one more shard (two children, one parent closed).
    await ops(
        "SplitShard",
        StreamName="a",
        ShardToSplit="shardId-000000000000",
        NewStartingHashKey=str(1 << 64),
    )
    assert (await ops("DescribeLimits"))["OpenShardCount"] == 8
    await ops("UpdateStreamMode", StreamName="a", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert (await ops("DescribeLimits"))["OnDemandStreamCount"] == 2
    await ops("DeleteStream", StreamName="b")
    out = await ops("DescribeLimits")
    assert (out["OpenShardCount"], out["OnDemandStreamCount"]) == (4, 1)
    assert out["ShardLimit"] == 2 * per_stream


# -- persistence ----------------------------------------------------------------------


async def test_settings_survive_a_restart(tmp_path: Path) -> None:
    async for ops in open_harness(tmp_path, max_record_bytes=4 * MIB):
        await ops("CreateStream", StreamName="s", ShardCount=2, MaxRecordSizeInKiB=2048)
        await ops("UpdateStreamMode", StreamName="s", StreamModeDetails={"StreamMode": "ON_DEMAND"})
        await ops("EnableEnhancedMonitoring", StreamName="s", ShardLevelMetrics=["IncomingRecords"])
        before = await summary(ops)
    async for ops in open_harness(tmp_path, max_record_bytes=4 * MIB):
        after = await summary(ops)
        assert after == before
        assert after["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
        assert after["EnhancedMonitoring"] == [{"ShardLevelMetrics": ["IncomingRecords"]}]
        assert after["MaxRecordSizeInKiB"] == 2048
        assert not await takes(ops, "s", 2 * MIB + 1)


async def test_a_catalog_written_before_these_settings_opens(tmp_path: Path) -> None:
    """A stream record without ``mode``, ``tags``, ``metrics``, ``max_record_kib``: defaults."""
    async for ops in open_harness(tmp_path):
        await ops("CreateStream", StreamName="s", ShardCount=2, Tags={"a": "1"})
        await ops("UpdateStreamMode", StreamName="s", StreamModeDetails={"StreamMode": "ON_DEMAND"})
        await ops("PutRecord", StreamName="s", PartitionKey="k", Data=b"old")
        incarnation = ops.broker.log.describe("s").incarnation
    # Rewrite the record as the previous release wrote it.
    config = make_config(tmp_path)
    env = LogEnvironment(config.data, config.log.env)
    try:
        db = env.dbs["streams"]
        with env.env.begin(write=True) as txn:
            stored = msgpack.unpackb(txn.get(log_keys.incarnation(incarnation), db=db))
            for field in ("mode", "tags", "metrics", "max_record_kib"):
                del stored[field]
            txn.put(log_keys.incarnation(incarnation), msgpack.packb(stored), db=db)
    finally:
        env.close()
    async for ops in open_harness(tmp_path):
        got = await summary(ops)
        assert got["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
        assert got["EnhancedMonitoring"] == [{"ShardLevelMetrics": []}]
        assert got["MaxRecordSizeInKiB"] == 1024
        assert got["OpenShardCount"] == 2
        assert await ops("ListTagsForStream", StreamName="s") == {"Tags": [], "HasMoreTags": False}
        # The stream works, and the new settings can be set on it.
        await ops("AddTagsToStream", StreamName="s", Tags={"b": "2"})
        await ops("UpdateStreamMode", StreamName="s", StreamModeDetails={"StreamMode": "ON_DEMAND"})
        assert [r["Data"] for r in await ops.read_all("s", "shardId-000000000000")] + [
            r["Data"] for r in await ops.read_all("s", "shardId-000000000001")
        ] == [b"old"]
