"""The Client against a real server: methods, errors, timeouts, reconnects."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import trio

from broker.client import (
    Client,
    ConnectionLostError,
    Consumer,
    ConsumerDescription,
    EnhancedMetrics,
    GetRecordsResult,
    GetShardIteratorResult,
    HashKeyRange,
    ListShardsResult,
    ListStreamConsumersResult,
    ListStreamsResult,
    PutRecordResult,
    PutRecordsResult,
    PutRecordsResultEntry,
    Record,
    RequestTimeoutError,
    SequenceNumberRange,
    Shard,
    StreamDescription,
    StreamDescriptionSummary,
    StreamModeDetails,
    UpdateShardCountResult,
    kinesis_field,
)
from broker.errors import ResourceNotFoundError, ShardlineError
from broker.operations import OPERATIONS, Broker
from tests.server.harness import Running, running_server

KINESIS_OPERATIONS = [
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
]


ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/s"
SHARD_MAP = {
    "ShardId": "shardId-000000000000",
    "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "9"},
    "SequenceNumberRange": {"StartingSequenceNumber": "100"},
}
SHARD = Shard("shardId-000000000000", HashKeyRange("0", "9"), SequenceNumberRange("100"))
SUMMARY_MAP = {
    "StreamName": "s",
    "StreamARN": ARN,
    "StreamStatus": "ACTIVE",
    "StreamModeDetails": {"StreamMode": "PROVISIONED"},
    "RetentionPeriodHours": 24,
    "StreamCreationTimestamp": 1_700_000_000_000,
    "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
    "EncryptionType": "NONE",
}
CONSUMER_ARN = ARN + "/consumer/c:1700000000"
CONSUMER_MAP = {
    "ConsumerName": "c",
    "ConsumerARN": CONSUMER_ARN,
    "ConsumerStatus": "ACTIVE",
    "ConsumerCreationTimestamp": 1_700_000_000_000,
}

#: What each Kinesis operation answers in ``canned_kinesis``: a wire map with a field
#: this client does not know, and the typed result the method must make of it.
CANNED: dict[str, tuple[dict[str, Any], Any]] = {
    "CreateStream": ({}, None),
    "DeleteStream": ({}, None),
    "DescribeStream": (
        {"StreamDescription": {**SUMMARY_MAP, "Shards": [SHARD_MAP], "HasMoreShards": False}},
        StreamDescription(
            stream_name="s",
            stream_arn=ARN,
            stream_status="ACTIVE",
            shards=[SHARD],
            has_more_shards=False,
            retention_period_hours=24,
            stream_creation_timestamp=1_700_000_000_000,
            enhanced_monitoring=[EnhancedMetrics([])],
            stream_mode_details=StreamModeDetails("PROVISIONED"),
            encryption_type="NONE",
        ),
    ),
    "DescribeStreamSummary": (
        {"StreamDescriptionSummary": {**SUMMARY_MAP, "OpenShardCount": 2, "ConsumerCount": 0}},
        StreamDescriptionSummary(
            stream_name="s",
            stream_arn=ARN,
            stream_status="ACTIVE",
            retention_period_hours=24,
            stream_creation_timestamp=1_700_000_000_000,
            enhanced_monitoring=[EnhancedMetrics([])],
            open_shard_count=2,
            stream_mode_details=StreamModeDetails("PROVISIONED"),
            encryption_type="NONE",
            consumer_count=0,
        ),
    ),
    "ListStreams": (
        {"StreamNames": ["s"], "HasMoreStreams": True, "NextToken": "t"},
        ListStreamsResult(["s"], True, [], "t"),
    ),
    "ListShards": ({"Shards": [SHARD_MAP]}, ListShardsResult([SHARD])),
    "PutRecord": (
        {"ShardId": "shardId-000000000000", "SequenceNumber": "101", "EncryptionType": "NONE"},
        PutRecordResult("shardId-000000000000", "101", "NONE"),
    ),
    "PutRecords": (
        {
            "FailedRecordCount": 0,
            "Records": [{"ShardId": "shardId-000000000000", "SequenceNumber": "102"}],
            "EncryptionType": "NONE",
        },
        PutRecordsResult(0, [PutRecordsResultEntry("shardId-000000000000", "102")], "NONE"),
    ),
    "GetShardIterator": ({"ShardIterator": "it"}, GetShardIteratorResult("it")),
    "GetRecords": (
        {
            "Records": [
                {
                    "SequenceNumber": "101",
                    "ApproximateArrivalTimestamp": 1_700_000_000_123,
                    "Data": b"\x00",
                    "PartitionKey": "k",
                }
            ],
            "NextShardIterator": "it2",
            "MillisBehindLatest": 5,
        },
        GetRecordsResult([Record("101", 1_700_000_000_123, b"\x00", "k")], "it2", 5, []),
    ),
    "SplitShard": ({}, None),
    "MergeShards": ({}, None),
    "UpdateShardCount": (
        {
            "StreamName": "s",
            "StreamARN": ARN,
            "CurrentShardCount": 2,
            "TargetShardCount": 4,
        },
        UpdateShardCountResult("s", ARN, 2, 4),
    ),
    "IncreaseStreamRetentionPeriod": ({}, None),
    "DecreaseStreamRetentionPeriod": ({}, None),
    "RegisterStreamConsumer": (
        {"Consumer": CONSUMER_MAP},
        Consumer("c", CONSUMER_ARN, "ACTIVE", 1_700_000_000_000),
    ),
    "DeregisterStreamConsumer": ({}, None),
    "DescribeStreamConsumer": (
        {"ConsumerDescription": {**CONSUMER_MAP, "StreamARN": ARN}},
        ConsumerDescription("c", CONSUMER_ARN, "ACTIVE", 1_700_000_000_000, ARN),
    ),
    "ListStreamConsumers": (
        {"Consumers": [CONSUMER_MAP], "NextToken": "t"},
        ListStreamConsumersResult([Consumer("c", CONSUMER_ARN, "ACTIVE", 1_700_000_000_000)], "t"),
    ),
}


@pytest.fixture
def canned_kinesis(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every Kinesis operation records its request and answers with its canned map."""
    received: list[tuple[str, dict[str, Any]]] = []
    for name in KINESIS_OPERATIONS:

        async def canned(
            broker: Broker, request: dict[str, Any], name: str = name
        ) -> dict[str, Any]:
            received.append((name, request))
            return {**CANNED[name][0], "FieldFromTheFuture": [1, {"x": None}]}

        monkeypatch.setitem(OPERATIONS, name, canned)
    return received


def test_field_names() -> None:
    assert kinesis_field("stream_name") == "StreamName"
    assert kinesis_field("stream_arn") == "StreamARN"
    assert kinesis_field("adjacent_shard_to_merge") == "AdjacentShardToMerge"


async def test_every_method_builds_the_kinesis_request_and_a_typed_result(
    running: Running, canned_kinesis: list[tuple[str, dict[str, Any]]]
) -> None:
    arn = ARN
    async with Client(running.endpoint) as c:
        expected: list[tuple[Any, str, dict[str, Any]]] = [
            (c.create_stream("s", 2), "CreateStream", {"StreamName": "s", "ShardCount": 2}),
            (
                c.delete_stream(stream_arn=arn, enforce_consumer_deletion=True),
                "DeleteStream",
                {"StreamARN": arn, "EnforceConsumerDeletion": True},
            ),
            (c.describe_stream("s", limit=5), "DescribeStream", {"StreamName": "s", "Limit": 5}),
            (c.describe_stream_summary("s"), "DescribeStreamSummary", {"StreamName": "s"}),
            (c.list_streams(limit=3), "ListStreams", {"Limit": 3}),
            (
                c.list_shards("s", shard_filter={"Type": "AT_LATEST"}),
                "ListShards",
                {"StreamName": "s", "ShardFilter": {"Type": "AT_LATEST"}},
            ),
            (
                c.put_record("s", b"\x00\xff", "k", explicit_hash_key="7"),
                "PutRecord",
                {
                    "StreamName": "s",
                    "Data": b"\x00\xff",
                    "PartitionKey": "k",
                    "ExplicitHashKey": "7",
                },
            ),
            (
                c.put_records(None, [{"Data": b"d", "PartitionKey": "k"}], stream_arn=arn),
                "PutRecords",
                {
                    "StreamARN": arn,
                    "Compact": True,
                    "PartitionKeys": ["k"],
                    "Data": [b"d"],
                    "HashKeys": hashlib.md5(b"k").digest(),
                },
            ),
            (
                c.get_shard_iterator(
                    "s", "shardId-000000000000", "AT_SEQUENCE_NUMBER", starting_sequence_number="5"
                ),
                "GetShardIterator",
                {
                    "StreamName": "s",
                    "ShardId": "shardId-000000000000",
                    "ShardIteratorType": "AT_SEQUENCE_NUMBER",
                    "StartingSequenceNumber": "5",
                },
            ),
            (
                c.get_records("it", limit=10),
                "GetRecords",
                {"ShardIterator": "it", "Limit": 10, "Compact": True},
            ),
            (
                c.split_shard("s", "shardId-000000000000", "123"),
                "SplitShard",
                {
                    "StreamName": "s",
                    "ShardToSplit": "shardId-000000000000",
                    "NewStartingHashKey": "123",
                },
            ),
            (
                c.merge_shards("s", "a", "b"),
                "MergeShards",
                {"StreamName": "s", "ShardToMerge": "a", "AdjacentShardToMerge": "b"},
            ),
            (
                c.update_shard_count("s", 4),
                "UpdateShardCount",
                {"StreamName": "s", "TargetShardCount": 4, "ScalingType": "UNIFORM_SCALING"},
            ),
            (
                c.increase_stream_retention_period("s", 48),
                "IncreaseStreamRetentionPeriod",
                {"StreamName": "s", "RetentionPeriodHours": 48},
            ),
            (
                c.decrease_stream_retention_period("s", 24),
                "DecreaseStreamRetentionPeriod",
                {"StreamName": "s", "RetentionPeriodHours": 24},
            ),
            (
                c.register_stream_consumer(arn, "c", tags={"k": "v"}),
                "RegisterStreamConsumer",
                {"StreamARN": arn, "ConsumerName": "c", "Tags": {"k": "v"}},
            ),
            (
                c.deregister_stream_consumer(consumer_arn=CONSUMER_ARN),
                "DeregisterStreamConsumer",
                {"ConsumerARN": CONSUMER_ARN},
            ),
            (
                c.describe_stream_consumer(arn, "c"),
                "DescribeStreamConsumer",
                {"StreamARN": arn, "ConsumerName": "c"},
            ),
            (
                c.list_stream_consumers(arn, next_token="t", max_results=5),
                "ListStreamConsumers",
                {"StreamARN": arn, "NextToken": "t", "MaxResults": 5},
            ),
        ]
        assert sorted(name for _, name, _ in expected) == sorted(KINESIS_OPERATIONS)
        for call, name, request in expected:
            result = await call
            assert canned_kinesis[-1] == (name, request)
            assert result == CANNED[name][1], name


async def test_a_map_without_a_required_field_is_a_named_error(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(broker: Broker, request: dict[str, Any]) -> dict[str, Any]:
        return {"Records": [{"SequenceNumber": "1"}], "NextShardIterator": None}

    monkeypatch.setitem(OPERATIONS, "GetRecords", broken)
    async with Client(running.endpoint) as client:
        with pytest.raises(ShardlineError) as caught:
            await client.get_records("it")
        assert caught.value.wire_name == "UnexpectedResponse"
        assert "GetRecords" in caught.value.message and "KeyError" in caught.value.message
        assert not caught.value.retriable
        # The raw map is still there for whoever asks for it.
        assert (await client.call("GetRecords", {}))["Records"] == [{"SequenceNumber": "1"}]


async def test_errors_are_raised_by_wire_name(running: Running) -> None:
    async with Client(running.endpoint) as client:
        with pytest.raises(ResourceNotFoundError) as caught:
            await client.call("TestMissing", {})
        assert caught.value.message == "Stream nope not found"
        assert not caught.value.retriable
        with pytest.raises(ShardlineError) as unknown:
            await client.call("/nowhere", {})
        assert unknown.value.wire_name in ("UnknownOperationException", "NotFoundException")


async def test_per_call_timeout(running: Running) -> None:
    async with Client(running.endpoint) as client:
        with pytest.raises(RequestTimeoutError) as caught:
            await client.call("TestSlow", {}, timeout=0.2)
        assert caught.value.retriable
        assert (await client.call("TestEcho", {"After": 1}))["Echo"] == {"After": 1}


async def test_reconnects_after_the_server_closed_the_connection(running: Running) -> None:
    async with Client(running.endpoint) as client:
        errors: list[BaseException] = []

        async def in_flight() -> None:
            try:
                await client.call("TestSlow", {})
            except ConnectionLostError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(in_flight)
            with trio.fail_after(5):
                await running.gate.entered.wait()
            (connection,) = running.server.connections
            assert connection.nursery is not None
            connection.nursery.cancel_scope.cancel()  # the server drops the connection
        assert len(errors) == 1
        assert isinstance(errors[0], ShardlineError) and errors[0].retriable
        assert (await client.call("TestEcho", {"Again": 1}))["Echo"] == {"Again": 1}
    assert running.server.metrics.connections_total == 2


def test_each_wire_name_raises_its_most_general_class() -> None:
    """ResourceInUseException is ResourceInUseError (not a subclass met first)."""
    from broker.client.client import error_class
    from broker.errors import ResourceInUseError

    assert error_class("ResourceInUseException", 400) is ResourceInUseError


async def test_more_calls_than_the_broker_allows_streams_all_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls past SETTINGS_MAX_CONCURRENT_STREAMS wait for a slot, and every one gets it."""
    async with (
        running_server(tmp_path, monkeypatch, max_concurrent_streams=2) as server,
        Client(server.endpoint) as client,
    ):
        done: list[int] = []

        async def call(i: int) -> None:
            answer = await client.call("TestEcho", {"I": i})
            done.append(answer["Echo"]["I"])

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(call, i)
        assert sorted(done) == list(range(50))
