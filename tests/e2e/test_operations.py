"""Every operation of the data plane through the real Client against a real server."""

from __future__ import annotations

import trio

from broker.client import Client
from broker.sequence import decode

from .harness import Served, read_all

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/"
S0, S1, S2, S3 = (f"shardId-00000000000{i}" for i in range(4))
HALF = 1 << 127


async def test_stream_admin(served: Served) -> None:
    async with Client(served.endpoint) as client:
        assert await client.create_stream("b", 2) == {}
        assert await client.create_stream("a", 1, RetentionPeriodHours=48) == {}
        await client.create_stream("c", 3)
        desc = (await client.describe_stream("b"))["StreamDescription"]
        assert (desc["StreamName"], desc["StreamARN"]) == ("b", ARN + "b")
        assert desc["StreamStatus"] == "ACTIVE"
        assert [s["ShardId"] for s in desc["Shards"]] == [S0, S1]
        assert desc["Shards"][0]["HashKeyRange"]["StartingHashKey"] == "0"
        page = (await client.describe_stream("c", limit=2))["StreamDescription"]
        assert [s["ShardId"] for s in page["Shards"]] == [S0, S1]
        assert page["HasMoreShards"] is True
        rest = await client.describe_stream("c", exclusive_start_shard_id=S1)
        assert [s["ShardId"] for s in rest["StreamDescription"]["Shards"]] == [S2]

        summary = (await client.describe_stream_summary(stream_arn=ARN + "a"))[
            "StreamDescriptionSummary"
        ]
        assert (summary["StreamName"], summary["OpenShardCount"]) == ("a", 1)
        assert summary["RetentionPeriodHours"] == 48

        listed = await client.list_streams(limit=2)
        assert (listed["StreamNames"], listed["HasMoreStreams"]) == (["a", "b"], True)
        more = await client.list_streams(next_token=listed["NextToken"])
        assert (more["StreamNames"], more["HasMoreStreams"]) == (["c"], False)
        after = await client.list_streams(exclusive_start_stream_name="a")
        assert after["StreamNames"] == ["b", "c"]

        assert await client.increase_stream_retention_period("b", 72) == {}
        assert await client.decrease_stream_retention_period("b", 36) == {}
        summary = (await client.describe_stream_summary("b"))["StreamDescriptionSummary"]
        assert summary["RetentionPeriodHours"] == 36

        assert await client.delete_stream("c", enforce_consumer_deletion=True) == {}
        assert await client.delete_stream(stream_arn=ARN + "a") == {}
        assert (await client.list_streams())["StreamNames"] == ["b"]


async def test_list_shards_filter_and_pages(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 3)
        first = await client.list_shards("s", max_results=2)
        assert [s["ShardId"] for s in first["Shards"]] == [S0, S1]
        second = await client.list_shards(next_token=first["NextToken"])
        assert [s["ShardId"] for s in second["Shards"]] == [S2]
        assert "NextToken" not in second
        await client.split_shard("s", S0, str(1 << 100))
        everything = await client.list_shards("s", shard_filter={"Type": "FROM_TRIM_HORIZON"})
        assert len(everything["Shards"]) == 5
        latest = await client.list_shards("s", shard_filter={"Type": "AT_LATEST"})
        assert S0 not in [s["ShardId"] for s in latest["Shards"]]
        assert len(latest["Shards"]) == 4
        after = await client.list_shards(
            "s", shard_filter={"Type": "AFTER_SHARD_ID", "ShardId": S2}
        )
        assert [s["ShardId"] for s in after["Shards"]] == [S3, "shardId-000000000004"]
        start = await client.list_shards(stream_arn=ARN + "s", exclusive_start_shard_id=S3)
        assert [s["ShardId"] for s in start["Shards"]] == ["shardId-000000000004"]


async def test_put_and_read_with_every_iterator_type(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 2)
        one = await client.put_record("s", b"first", "k", explicit_hash_key="0")
        assert one["ShardId"] == S0
        assert decode(one["SequenceNumber"])[1:] == (0, 1)
        batch = [
            {"Data": f"r{i}".encode(), "PartitionKey": f"k{i}", "ExplicitHashKey": "1"}
            for i in range(10)
        ]
        put = await client.put_records("s", batch)
        assert put["FailedRecordCount"] == 0
        sequences = [r["SequenceNumber"] for r in put["Records"]]
        assert [decode(s)[2] for s in sequences] == list(range(2, 12))
        routed = await client.put_records(
            "s", [{"Data": b"x", "PartitionKey": "p", "ExplicitHashKey": str(HALF)}]
        )
        assert routed["Records"][0]["ShardId"] == S1

        records = await read_all(client, "s", S0)
        assert [r["Data"] for r in records] == [b"first"] + [f"r{i}".encode() for i in range(10)]
        assert [r["PartitionKey"] for r in records[1:]] == [f"k{i}" for i in range(10)]
        assert records[1]["SequenceNumber"] == sequences[0]

        async def first_data(kind: str, **extra: object) -> bytes | None:
            it = await client.get_shard_iterator("s", S0, kind, **extra)  # type: ignore[arg-type]
            page = await client.get_records(it["ShardIterator"], limit=1)
            return page["Records"][0]["Data"] if page["Records"] else None

        assert await first_data("TRIM_HORIZON") == b"first"
        assert await first_data("AT_SEQUENCE_NUMBER", starting_sequence_number=sequences[3]) == (
            b"r3"
        )
        assert await first_data("AFTER_SEQUENCE_NUMBER", starting_sequence_number=sequences[3]) == (
            b"r4"
        )
        assert await first_data("AT_TIMESTAMP", timestamp=0) == b"first"
        latest = await client.get_shard_iterator("s", S0, "LATEST")
        assert (await client.get_records(latest["ShardIterator"]))["Records"] == []
        await client.put_record("s", b"new", "k", explicit_hash_key="0")
        page = await client.get_records(latest["ShardIterator"])
        assert [r["Data"] for r in page["Records"]] == [b"new"]
        assert page["MillisBehindLatest"] == 0
        assert isinstance(page["NextShardIterator"], str)
        limited = await client.get_records(
            (await client.get_shard_iterator("s", S0, "TRIM_HORIZON"))["ShardIterator"], limit=3
        )
        assert len(limited["Records"]) == 3


async def test_concurrent_puts_keep_order_per_shard(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 1)

        async def producer(n: int) -> None:
            for i in range(5):
                batch = [{"Data": f"{n}:{i}:{j}".encode(), "PartitionKey": "k"} for j in range(20)]
                assert (await client.put_records("s", batch))["FailedRecordCount"] == 0

        async with trio.open_nursery() as nursery:
            for n in range(4):
                nursery.start_soon(producer, n)
        records = await read_all(client, "s", S0)
        assert len(records) == 400
        for n in range(4):
            mine = [r["Data"] for r in records if r["Data"].startswith(f"{n}:".encode())]
            assert mine == [f"{n}:{i}:{j}".encode() for i in range(5) for j in range(20)]
        offsets = [decode(r["SequenceNumber"])[2] for r in records]
        assert offsets == list(range(1, 401))


async def test_resharding_and_closed_shard_end(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 1)
        await client.put_records(
            "s", [{"Data": b"before", "PartitionKey": "k", "ExplicitHashKey": "5"}]
        )
        assert await client.split_shard("s", S0, str(HALF)) == {}
        await client.put_records(
            "s", [{"Data": b"after", "PartitionKey": "k", "ExplicitHashKey": "5"}]
        )

        it = (await client.get_shard_iterator("s", S0, "TRIM_HORIZON"))["ShardIterator"]
        page = await client.get_records(it)
        assert [r["Data"] for r in page["Records"]] == [b"before"]
        if page["NextShardIterator"] is not None:  # the end may come on the next call
            page = await client.get_records(page["NextShardIterator"])
            assert page["Records"] == []
        assert page["NextShardIterator"] is None
        children = page["ChildShards"]
        assert sorted(c["ShardId"] for c in children) == [S1, S2]
        assert all(c["ParentShards"] == [S0] for c in children)
        assert [r["Data"] for r in await read_all(client, "s", S1)] == [b"after"]

        assert await client.merge_shards("s", S1, S2) == {}
        open_ids = [
            s["ShardId"]
            for s in (await client.list_shards("s", shard_filter={"Type": "AT_LATEST"}))["Shards"]
        ]
        assert open_ids == [S3]
        merged = await client.describe_stream("s")
        shard3 = merged["StreamDescription"]["Shards"][-1]
        assert (shard3["ParentShardId"], shard3["AdjacentParentShardId"]) == (S1, S2)

        scaled = await client.update_shard_count("s", 2)
        assert (scaled["CurrentShardCount"], scaled["TargetShardCount"]) == (1, 2)
        summary = (await client.describe_stream_summary("s"))["StreamDescriptionSummary"]
        assert summary["OpenShardCount"] == 2
