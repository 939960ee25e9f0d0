"""boto3 code written for Kinesis, run against a real shardline process with only ``endpoint_url``.

Every call goes through botocore's own serializer, HTTP/1.1 connection pool,
parser and error factory, so what passes here is what a user's code sees.
"""

from __future__ import annotations

import datetime
import hashlib
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

STREAM = "orders"
DEADLINE_S = 30.0


def create_active(client: Any, name: str = STREAM, shards: int = 2) -> str:
    client.create_stream(StreamName=name, ShardCount=shards)
    client.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.1})
    arn: str = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
        "StreamARN"
    ]
    return arn


def read_shard(client: Any, shard_id: str, **position: Any) -> tuple[list[Any], Any]:
    """Every record from ``position`` to the shard's newest; the last page's answer."""
    iterator = client.get_shard_iterator(StreamName=STREAM, ShardId=shard_id, **position)[
        "ShardIterator"
    ]
    records: list[Any] = []
    while True:
        page = client.get_records(ShardIterator=iterator, Limit=10_000)
        records += page["Records"]
        ended = page.get("NextShardIterator") is None
        if ended or (not page["Records"] and page["MillisBehindLatest"] == 0):
            return records, page
        iterator = page["NextShardIterator"]


def test_stream_lifecycle(client: Any) -> None:
    arn = create_active(client)
    assert arn == f"arn:aws:kinesis:us-east-1:000000000000:stream/{STREAM}"
    assert STREAM in client.list_streams()["StreamNames"]
    summary = client.describe_stream_summary(StreamARN=arn)["StreamDescriptionSummary"]
    assert summary["StreamStatus"] == "ACTIVE"
    assert summary["OpenShardCount"] == 2
    assert isinstance(summary["StreamCreationTimestamp"], datetime.datetime)
    description = client.describe_stream(StreamName=STREAM)["StreamDescription"]
    assert [s["ShardId"] for s in description["Shards"]] == [
        "shardId-000000000000",
        "shardId-000000000001",
    ]
    shards = client.list_shards(StreamName=STREAM)["Shards"]
    assert shards[-1]["HashKeyRange"]["EndingHashKey"] == str(2**128 - 1)
    with pytest.raises(client.exceptions.ResourceInUseException):
        client.create_stream(StreamName=STREAM, ShardCount=1)
    client.delete_stream(StreamName=STREAM)
    client.get_waiter("stream_not_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 0.1})
    with pytest.raises(client.exceptions.ResourceNotFoundException) as caught:
        client.describe_stream_summary(StreamName=STREAM)
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["ResponseMetadata"]["RequestId"]


def test_put_records_answers_each_record_in_order(client: Any) -> None:
    create_active(client)
    records = [
        {"Data": f"order-{i}".encode(), "PartitionKey": f"customer-{i % 7}"} for i in range(500)
    ]
    answer = client.put_records(StreamName=STREAM, Records=records)
    assert answer["FailedRecordCount"] == 0
    entries = answer["Records"]
    assert len(entries) == 500
    by_shard: dict[str, list[int]] = {}
    for entry in entries:
        by_shard.setdefault(entry["ShardId"], []).append(int(entry["SequenceNumber"]))
    assert set(by_shard) == {"shardId-000000000000", "shardId-000000000001"}
    for numbers in by_shard.values():
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    # Every record comes back from its shard, data and key intact, in the order put.
    for shard, numbers in by_shard.items():
        got, _ = read_shard(client, shard, ShardIteratorType="TRIM_HORIZON")
        assert [int(r["SequenceNumber"]) for r in got] == numbers
        expected = [r for r, e in zip(records, entries, strict=True) if e["ShardId"] == shard]
        assert [(r["Data"], r["PartitionKey"]) for r in got] == [
            (r["Data"], r["PartitionKey"]) for r in expected
        ]


def test_put_records_over_the_record_limit_is_a_validation_error(client: Any) -> None:
    create_active(client)
    with pytest.raises(ClientError) as caught:
        client.put_records(
            StreamName=STREAM,
            Records=[{"Data": b"x", "PartitionKey": "k"}] * 501,
        )
    assert caught.value.response["Error"]["Code"] in (
        "ValidationException",
        "InvalidArgumentException",
    )


def test_every_iterator_type(client: Any) -> None:
    create_active(client, shards=1)
    shard = "shardId-000000000000"
    put = [
        client.put_record(StreamName=STREAM, Data=d, PartitionKey="k")
        for d in (b"a0", b"a1", b"a2", b"b0", b"b1", b"b2")
    ]
    numbers = [r["SequenceNumber"] for r in put]

    def data(records: list[Any]) -> list[bytes]:
        return [r["Data"] for r in records]

    everything, _ = read_shard(client, shard, ShardIteratorType="TRIM_HORIZON")
    assert data(everything) == [b"a0", b"a1", b"a2", b"b0", b"b1", b"b2"]
    assert [r["SequenceNumber"] for r in everything] == numbers
    got, _ = read_shard(
        client, shard, ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=numbers[2]
    )
    assert data(got) == [b"a2", b"b0", b"b1", b"b2"]
    got, _ = read_shard(
        client, shard, ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=numbers[2]
    )
    assert data(got) == [b"b0", b"b1", b"b2"]
    # AT_TIMESTAMP: from the first record that arrived at or after b0's arrival.
    moment = everything[3]["ApproximateArrivalTimestamp"]
    expected = [r for r in everything if r["ApproximateArrivalTimestamp"] >= moment]
    got, _ = read_shard(client, shard, ShardIteratorType="AT_TIMESTAMP", Timestamp=moment)
    assert data(got) == data(expected) and data(got)[-3:] == [b"b0", b"b1", b"b2"]
    latest = client.get_shard_iterator(StreamName=STREAM, ShardId=shard, ShardIteratorType="LATEST")
    client.put_record(StreamName=STREAM, Data=b"c", PartitionKey="k")
    page = client.get_records(ShardIterator=latest["ShardIterator"])
    assert data(page["Records"]) == [b"c"]
    assert len(latest["ShardIterator"]) <= 512
    with pytest.raises(client.exceptions.InvalidArgumentException):
        client.get_shard_iterator(
            StreamName=STREAM,
            ShardId=shard,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber="1" + "0" * 60,
        )


def test_resharding_ends_the_parent_with_its_children(client: Any) -> None:
    create_active(client, shards=1)
    parent = "shardId-000000000000"
    for i in range(10):
        client.put_record(StreamName=STREAM, Data=b"before-%d" % i, PartitionKey=str(i))
    client.split_shard(StreamName=STREAM, ShardToSplit=parent, NewStartingHashKey=str(2**127))
    client.get_waiter("stream_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 0.1})
    shards = client.list_shards(StreamName=STREAM)["Shards"]
    children = [s for s in shards if s.get("ParentShardId") == parent]
    assert len(children) == 2
    closed = next(s for s in shards if s["ShardId"] == parent)
    assert "EndingSequenceNumber" in closed["SequenceNumberRange"]
    got, last = read_shard(client, parent, ShardIteratorType="TRIM_HORIZON")
    assert [r["Data"] for r in got] == [b"before-%d" % i for i in range(10)]
    assert last.get("NextShardIterator") is None
    assert sorted(c["ShardId"] for c in last["ChildShards"]) == sorted(
        c["ShardId"] for c in children
    )
    assert all(c["ParentShards"] == [parent] for c in last["ChildShards"])
    # New records go to the children, by hash.
    answer = client.put_record(StreamName=STREAM, Data=b"after", PartitionKey="x")
    assert answer["ShardId"] in {c["ShardId"] for c in children}
    left, right = sorted(c["ShardId"] for c in children)
    client.merge_shards(StreamName=STREAM, ShardToMerge=left, AdjacentShardToMerge=right)
    shards = client.list_shards(StreamName=STREAM)["Shards"]
    merged = [s for s in shards if s.get("AdjacentParentShardId")]
    assert len(merged) == 1 and {
        merged[0]["ParentShardId"],
        merged[0]["AdjacentParentShardId"],
    } == {
        left,
        right,
    }


def test_consumer_registration(client: Any) -> None:
    arn = create_active(client)
    consumer = client.register_stream_consumer(StreamARN=arn, ConsumerName="reader")["Consumer"]
    assert consumer["ConsumerARN"].startswith(f"{arn}/consumer/reader:")
    assert consumer["ConsumerStatus"] in ("CREATING", "ACTIVE")
    assert isinstance(consumer["ConsumerCreationTimestamp"], datetime.datetime)
    described = client.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
    assert described["ConsumerDescription"]["StreamARN"] == arn
    by_name = client.describe_stream_consumer(StreamARN=arn, ConsumerName="reader")
    assert by_name["ConsumerDescription"]["ConsumerARN"] == consumer["ConsumerARN"]
    listed = client.list_stream_consumers(StreamARN=arn)["Consumers"]
    assert [c["ConsumerName"] for c in listed] == ["reader"]
    with pytest.raises(client.exceptions.ResourceInUseException):
        client.register_stream_consumer(StreamARN=arn, ConsumerName="reader")
    with pytest.raises(client.exceptions.ResourceInUseException):
        client.delete_stream(StreamName=STREAM)
    client.deregister_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
    assert client.list_stream_consumers(StreamARN=arn)["Consumers"] == []
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])


def _events(client: Any, consumer_arn: str, shard: str, position: dict[str, Any]) -> Any:
    answer = client.subscribe_to_shard(
        ConsumerARN=consumer_arn, ShardId=shard, StartingPosition=position
    )
    return answer["EventStream"]


def test_subscribe_to_shard_in_order_across_resubscriptions(client: Any) -> None:
    """Records come in order with no gap or duplicate, across the 2-s lifetimes.

    Some are stored before the first subscription, some put while it runs
    (they arrive live), some while nobody is subscribed (read after resubscribing
    ``AFTER_SEQUENCE_NUMBER`` the last continuation, as the KCL does).
    """
    arn = create_active(client, shards=1)
    shard = "shardId-000000000000"
    consumer = client.register_stream_consumer(StreamARN=arn, ConsumerName="efo")["Consumer"]

    def put(prefix: str, count: int) -> list[bytes]:
        data = [f"{prefix}{i}".encode() for i in range(count)]
        client.put_records(
            StreamName=STREAM, Records=[{"Data": d, "PartitionKey": "k"} for d in data]
        )
        return data

    stored, live, between = put("stored", 50), [f"live{i}".encode() for i in range(20)], []
    got: list[bytes] = []
    continuations: list[str] = []
    position: dict[str, Any] = {"Type": "TRIM_HORIZON"}
    subscriptions = 0
    deadline = time.monotonic() + DEADLINE_S
    while not between or len(got) < len(stored) + len(live) + len(between):
        assert time.monotonic() < deadline, f"only {len(got)} records before the deadline"
        subscriptions += 1
        for event in _events(client, consumer["ConsumerARN"], shard, position):
            body = event["SubscribeToShardEvent"]
            got += [r["Data"] for r in body["Records"]]
            assert body["ContinuationSequenceNumber"] is not None
            assert body["MillisBehindLatest"] >= 0
            continuations.append(body["ContinuationSequenceNumber"])
            if len(got) == len(stored) and subscriptions == 1:
                put_live = put("live", len(live))
                assert put_live == live
        # The lifetime ended (2 s here, 5 minutes by default).
        if subscriptions == 1:
            assert got == stored + live
            between = put("between", 10)
        position = {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": continuations[-1]}
    assert got == stored + live + between
    assert subscriptions >= 2
    assert [int(c) for c in continuations] == sorted(int(c) for c in continuations)


def test_subscribe_to_shard_reports_children_at_the_end_of_a_closed_shard(client: Any) -> None:
    arn = create_active(client, shards=1)
    parent = "shardId-000000000000"
    consumer = client.register_stream_consumer(StreamARN=arn, ConsumerName="efo")["Consumer"]
    client.put_record(StreamName=STREAM, Data=b"only", PartitionKey="k")
    client.split_shard(StreamName=STREAM, ShardToSplit=parent, NewStartingHashKey=str(2**127))
    bodies = [
        event["SubscribeToShardEvent"]
        for event in _events(client, consumer["ConsumerARN"], parent, {"Type": "TRIM_HORIZON"})
    ]
    assert [r["Data"] for b in bodies for r in b["Records"]] == [b"only"]
    last = bodies[-1]
    assert last.get("ContinuationSequenceNumber") is None
    assert len(last["ChildShards"]) == 2
    assert all(c["ParentShards"] == [parent] for c in last["ChildShards"])


def test_subscribe_errors_are_named(client: Any) -> None:
    arn = create_active(client, shards=1)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.subscribe_to_shard(
            ConsumerARN=f"{arn}/consumer/nobody:1",
            ShardId="shardId-000000000000",
            StartingPosition={"Type": "LATEST"},
        )
    consumer = client.register_stream_consumer(StreamARN=arn, ConsumerName="efo")["Consumer"]
    first = client.subscribe_to_shard(
        ConsumerARN=consumer["ConsumerARN"],
        ShardId="shardId-000000000000",
        StartingPosition={"Type": "LATEST"},
    )
    try:
        with pytest.raises(client.exceptions.ResourceInUseException):
            client.subscribe_to_shard(
                ConsumerARN=consumer["ConsumerARN"],
                ShardId="shardId-000000000000",
                StartingPosition={"Type": "LATEST"},
            )
    finally:
        first["EventStream"].close()


def test_data_round_trips_every_byte(client: Any) -> None:
    create_active(client, shards=1)
    blobs = [bytes(range(256)), b"\x00", hashlib.sha256(b"x").digest() * 100]
    for blob in blobs:
        client.put_record(StreamName=STREAM, Data=blob, PartitionKey="k")
    got, _ = read_shard(client, "shardId-000000000000", ShardIteratorType="TRIM_HORIZON")
    assert [r["Data"] for r in got] == blobs


def test_a_takeover_ends_the_old_subscription_with_an_exception_event(client: Any) -> None:
    arn = create_active(client, shards=1)
    consumer = client.register_stream_consumer(StreamARN=arn, ConsumerName="efo")["Consumer"]
    position = {"Type": "LATEST"}
    old = _events(client, consumer["ConsumerARN"], "shardId-000000000000", position)
    deadline = time.monotonic() + DEADLINE_S
    while True:  # refused within the takeover window (0.5 s here), then it takes over
        assert time.monotonic() < deadline, "the takeover window never closed"
        try:
            new = _events(client, consumer["ConsumerARN"], "shardId-000000000000", position)
            break
        except client.exceptions.ResourceInUseException:
            continue
    try:
        with pytest.raises(ClientError) as caught:
            for _event in old:  # heartbeats, until the exception event
                assert time.monotonic() < deadline
        assert caught.value.response["Error"]["Code"] == "ResourceInUseException"
        client.put_record(StreamName=STREAM, Data=b"after", PartitionKey="k")
        for event in new:
            records = event["SubscribeToShardEvent"]["Records"]
            if records:
                assert [r["Data"] for r in records] == [b"after"]
                break
    finally:
        new.close()
