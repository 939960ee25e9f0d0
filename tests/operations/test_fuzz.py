"""Arbitrary requests to every operation: a named 400 error or a response, never anything else."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.errors import SerializationError, ShardlineError, UnknownOperationError
from broker.operations import OPERATIONS, as_dict, dispatch
from broker.protocol.codec import encode_body

from .conftest import Harness

FIELDS = [
    "StreamName",
    "StreamARN",
    "ShardCount",
    "StreamModeDetails",
    "Tags",
    "RetentionPeriodHours",
    "MaxRecordSizeInKiB",
    "EnforceConsumerDeletion",
    "Limit",
    "ExclusiveStartShardId",
    "ExclusiveStartStreamName",
    "NextToken",
    "MaxResults",
    "ShardFilter",
    "StreamCreationTimestamp",
    "Data",
    "PartitionKey",
    "ExplicitHashKey",
    "SequenceNumberForOrdering",
    "Records",
    "ShardId",
    "ShardIteratorType",
    "StartingSequenceNumber",
    "Timestamp",
    "ShardIterator",
    "ShardToSplit",
    "NewStartingHashKey",
    "ShardToMerge",
    "AdjacentShardToMerge",
    "TargetShardCount",
    "ScalingType",
    "StreamMode",
    "Type",
    "ConsumerName",
    "ConsumerARN",
    # Tags, stream settings and encryption (tags.py, stream_settings.py).
    "ResourceARN",
    "TagKeys",
    "ExclusiveStartTagKey",
    "ShardLevelMetrics",
    "EncryptionType",
    "KeyId",
    "DryRun",
]
PLAUSIBLE = [
    "s",
    "t",
    "arn:aws:kinesis:us-east-1:000000000000:stream/s",
    "arn:aws:kinesis:eu-west-1:000000000000:stream/s",
    "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:1700000000",
    "c",
    "shardId-000000000000",
    "shardId-000000000001",
    "shardId-999999999999",
    "TRIM_HORIZON",
    "LATEST",
    "AT_SEQUENCE_NUMBER",
    "AFTER_SEQUENCE_NUMBER",
    "AT_TIMESTAMP",
    "AFTER_SHARD_ID",
    "AT_LATEST",
    "FROM_TIMESTAMP",
    "ON_DEMAND",
    "PROVISIONED",
    "UNIFORM_SCALING",
    "ALL",
    "IncomingBytes",
    "KMS",
    "team",
    "0",
    "340282366920938463463374607431768211455",
    "79228162514264337593543950337",
    "170141183460469231731687303715884105728",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.sampled_from(PLAUSIBLE),
    st.integers(min_value=0, max_value=70),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=5)), inner, max_size=4),
    ),
    max_leaves=12,
)
requests = st.dictionaries(
    st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)), values, max_size=8
)
records = st.lists(
    st.fixed_dictionaries(
        {
            "PartitionKey": st.one_of(st.text(max_size=300), values),
            "Data": st.one_of(st.binary(), values),
        },
        optional={"ExplicitHashKey": st.one_of(st.sampled_from(PLAUSIBLE), values)},
    ),
    max_size=6,
)


async def check(ops: Harness, name: str, request: Any) -> None:
    try:
        response = await dispatch(ops.broker, name, request)
    except ShardlineError as exc:
        assert exc.http_status == 400, f"{name} {request!r}: {exc!r}"
        assert isinstance(exc.message, str)
    else:
        as_map = as_dict(response)
        assert isinstance(as_map, dict)
        # A prepared result packs itself exactly as its map form packs.
        assert encode_body(response) == msgpack.packb(as_map)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(name=st.sampled_from(sorted(OPERATIONS)), request=requests)
async def test_arbitrary_requests(ops: Harness, name: str, request: dict[str, Any]) -> None:
    await ensure_stream(ops)
    await check(ops, name, request)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(
    name=st.sampled_from(["PutRecord", "PutRecords"]),
    batch=records,
    single=st.dictionaries(st.sampled_from(FIELDS), values, max_size=3),
)
async def test_arbitrary_records(
    ops: Harness, name: str, batch: list[dict[str, Any]], single: dict[str, Any]
) -> None:
    await ensure_stream(ops)
    request = {"StreamName": "s", **single}
    request.update({"Records": batch} if name == "PutRecords" else (batch[0] if batch else {}))
    await check(ops, name, request)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=100)
@given(filter_=values, extra=requests)
async def test_arbitrary_listings_and_reads(
    ops: Harness, filter_: Any, extra: dict[str, Any]
) -> None:
    await ensure_stream(ops)
    await check(ops, "ListShards", {**extra, "StreamName": "s", "ShardFilter": filter_})
    token = await ops.iterator("s", "shardId-000000000000")
    await check(ops, "GetRecords", {**extra, "ShardIterator": token})


async def ensure_stream(ops: Harness) -> None:
    try:
        ops.broker.log.describe("s")
    except ShardlineError:
        await ops.create("s", 2)
        await ops("PutRecord", StreamName="s", PartitionKey="k", Data=b"x")


@pytest.mark.parametrize("body", [None, [], "text", b"bin", 5])
async def test_request_must_be_a_map(ops: Harness, body: object) -> None:
    with pytest.raises(SerializationError):
        await dispatch(ops.broker, "ListStreams", body)


async def test_unknown_operation(ops: Harness) -> None:
    with pytest.raises(UnknownOperationError):
        await dispatch(ops.broker, "SubscribeToNothing", {})


def test_table_is_complete() -> None:
    assert set(OPERATIONS) >= {
        "CreateStream",
        "DeleteStream",
        "DescribeStream",
        "DescribeStreamSummary",
        "ListStreams",
        "ListShards",
        "PutRecord",
        "PutRecords",
        "GetShardIterator",
        "GetRecords",
        "SplitShard",
        "MergeShards",
        "UpdateShardCount",
        "IncreaseStreamRetentionPeriod",
        "DecreaseStreamRetentionPeriod",
        "RegisterStreamConsumer",
        "DeregisterStreamConsumer",
        "DescribeStreamConsumer",
        "ListStreamConsumers",
        "SubscribeToShard",
        "AcquireLease",
        "RenewLease",
        "ReleaseLease",
        "ListLeases",
        "SetCheckpoint",
        "GetCheckpoint",
    }
