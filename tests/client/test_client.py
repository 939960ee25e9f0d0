"""The Client against a real server: methods, errors, timeouts, reconnects."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from broker.client import Client, ConnectionLostError, RequestTimeoutError, kinesis_field
from broker.errors import ResourceNotFoundError, ShardlineError
from broker.operations import OPERATIONS, Broker
from tests.server.harness import Running

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
]


@pytest.fixture
def echo_kinesis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Kinesis operation answers with its name and the request it got."""
    for name in KINESIS_OPERATIONS:

        async def echo(broker: Broker, request: dict[str, Any], name: str = name) -> dict[str, Any]:
            return {"Operation": name, "Request": request}

        monkeypatch.setitem(OPERATIONS, name, echo)


def test_field_names() -> None:
    assert kinesis_field("stream_name") == "StreamName"
    assert kinesis_field("stream_arn") == "StreamARN"
    assert kinesis_field("adjacent_shard_to_merge") == "AdjacentShardToMerge"


@pytest.mark.usefixtures("echo_kinesis")
async def test_every_method_builds_the_kinesis_request(running: Running) -> None:
    arn = "arn:aws:kinesis:us-east-1:000000000000:stream/s"
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
                {"StreamARN": arn, "Records": [{"Data": b"d", "PartitionKey": "k"}]},
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
            (c.get_records("it", limit=10), "GetRecords", {"ShardIterator": "it", "Limit": 10}),
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
        ]
        assert sorted(name for _, name, _ in expected) == sorted(KINESIS_OPERATIONS)
        for call, name, request in expected:
            assert await call == {"Operation": name, "Request": request}


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
