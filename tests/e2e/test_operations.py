"""Every operation of the data plane through the real Client against a real server."""

from __future__ import annotations

import time

import trio

from broker.client import Client
from broker.sequence import decode

from .harness import Served, read_all

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/"
S0, S1, S2, S3 = (f"shardId-00000000000{i}" for i in range(4))
HALF = 1 << 127


async def test_stream_admin(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("b", 2)
        await client.create_stream("a", 1, RetentionPeriodHours=48)
        await client.create_stream("c", 3)
        desc = await client.describe_stream("b")
        assert (desc.stream_name, desc.stream_arn) == ("b", ARN + "b")
        assert desc.stream_status == "ACTIVE"
        assert [s.shard_id for s in desc.shards] == [S0, S1]
        assert desc.shards[0].hash_key_range.starting_hash_key == "0"
        assert desc.shards[0].is_open
        assert desc.stream_mode_details is not None
        assert desc.stream_mode_details.stream_mode == "PROVISIONED"
        page = await client.describe_stream("c", limit=2)
        assert [s.shard_id for s in page.shards] == [S0, S1]
        assert page.has_more_shards is True
        rest = await client.describe_stream("c", exclusive_start_shard_id=S1)
        assert [s.shard_id for s in rest.shards] == [S2]
        assert rest.has_more_shards is False

        summary = await client.describe_stream_summary(stream_arn=ARN + "a")
        assert (summary.stream_name, summary.open_shard_count) == ("a", 1)
        assert summary.retention_period_hours == 48

        listed = await client.list_streams(limit=2)
        assert (listed.stream_names, listed.has_more_streams) == (["a", "b"], True)
        assert [s.stream_name for s in listed.stream_summaries] == ["a", "b"]
        assert listed.next_token is not None
        more = await client.list_streams(next_token=listed.next_token)
        assert (more.stream_names, more.has_more_streams, more.next_token) == (["c"], False, None)
        after = await client.list_streams(exclusive_start_stream_name="a")
        assert after.stream_names == ["b", "c"]

        await client.increase_stream_retention_period("b", 72)
        await client.decrease_stream_retention_period("b", 36)
        summary = await client.describe_stream_summary("b")
        assert summary.retention_period_hours == 36

        await client.delete_stream("c", enforce_consumer_deletion=True)
        await client.delete_stream(stream_arn=ARN + "a")
        assert (await client.list_streams()).stream_names == ["b"]


async def test_list_shards_filter_and_pages(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 3)
        first = await client.list_shards("s", max_results=2)
        assert [s.shard_id for s in first.shards] == [S0, S1]
        assert first.next_token is not None
        second = await client.list_shards(next_token=first.next_token)
        assert [s.shard_id for s in second.shards] == [S2]
        assert second.next_token is None
        await client.split_shard("s", S0, str(1 << 100))
        everything = await client.list_shards("s", shard_filter={"Type": "FROM_TRIM_HORIZON"})
        assert len(everything.shards) == 5
        assert not everything.shards[0].is_open
        latest = await client.list_shards("s", shard_filter={"Type": "AT_LATEST"})
        assert S0 not in [s.shard_id for s in latest.shards]
        assert len(latest.shards) == 4
        after = await client.list_shards(
            "s", shard_filter={"Type": "AFTER_SHARD_ID", "ShardId": S2}
        )
        assert [s.shard_id for s in after.shards] == [S3, "shardId-000000000004"]
        start = await client.list_shards(stream_arn=ARN + "s", exclusive_start_shard_id=S3)
        assert [s.shard_id for s in start.shards] == ["shardId-000000000004"]


async def test_put_and_read_with_every_iterator_type(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 2)
        one = await client.put_record("s", b"first", "k", explicit_hash_key="0")
        assert one.shard_id == S0
        assert decode(one.sequence_number)[1:] == (0, 1)
        batch = [
            {"Data": f"r{i}".encode(), "PartitionKey": f"k{i}", "ExplicitHashKey": "1"}
            for i in range(10)
        ]
        put = await client.put_records("s", batch)
        assert put.failed_record_count == 0
        assert all(r.ok for r in put.records)
        sequences = [r.sequence_number for r in put.records]
        assert [decode(s)[2] for s in sequences if s is not None] == list(range(2, 12))
        routed = await client.put_records(
            "s", [{"Data": b"x", "PartitionKey": "p", "ExplicitHashKey": str(HALF)}]
        )
        assert routed.records[0].shard_id == S1

        records = await read_all(client, "s", S0)
        assert [r.data for r in records] == [b"first"] + [f"r{i}".encode() for i in range(10)]
        assert [r.partition_key for r in records[1:]] == [f"k{i}" for i in range(10)]
        assert records[1].sequence_number == sequences[0]
        assert abs(records[0].arrival.timestamp() - time.time()) < 60

        async def first_data(kind: str, **extra: object) -> bytes | None:
            it = await client.get_shard_iterator("s", S0, kind, **extra)  # type: ignore[arg-type]
            page = await client.get_records(it.shard_iterator, limit=1)
            return page.records[0].data if page.records else None

        assert await first_data("TRIM_HORIZON") == b"first"
        assert await first_data("AT_SEQUENCE_NUMBER", starting_sequence_number=sequences[3]) == (
            b"r3"
        )
        assert await first_data("AFTER_SEQUENCE_NUMBER", starting_sequence_number=sequences[3]) == (
            b"r4"
        )
        assert await first_data("AT_TIMESTAMP", timestamp=0) == b"first"
        latest = await client.get_shard_iterator("s", S0, "LATEST")
        assert (await client.get_records(latest.shard_iterator)).records == []
        await client.put_record("s", b"new", "k", explicit_hash_key="0")
        page = await client.get_records(latest.shard_iterator)
        assert [r.data for r in page.records] == [b"new"]
        assert page.millis_behind_latest == 0
        assert isinstance(page.next_shard_iterator, str)
        assert page.child_shards == []
        limited = await client.get_records(
            (await client.get_shard_iterator("s", S0, "TRIM_HORIZON")).shard_iterator, limit=3
        )
        assert len(limited.records) == 3
        assert limited.millis_behind_latest >= 0


async def test_concurrent_puts_keep_order_per_shard(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 1)

        async def producer(n: int) -> None:
            for i in range(5):
                batch = [{"Data": f"{n}:{i}:{j}".encode(), "PartitionKey": "k"} for j in range(20)]
                assert (await client.put_records("s", batch)).failed_record_count == 0

        async with trio.open_nursery() as nursery:
            for n in range(4):
                nursery.start_soon(producer, n)
        records = await read_all(client, "s", S0)
        assert len(records) == 400
        for n in range(4):
            mine = [r.data for r in records if r.data.startswith(f"{n}:".encode())]
            assert mine == [f"{n}:{i}:{j}".encode() for i in range(5) for j in range(20)]
        offsets = [decode(r.sequence_number)[2] for r in records]
        assert offsets == list(range(1, 401))


async def test_resharding_and_closed_shard_end(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 1)
        await client.put_records(
            "s", [{"Data": b"before", "PartitionKey": "k", "ExplicitHashKey": "5"}]
        )
        await client.split_shard("s", S0, str(HALF))
        await client.put_records(
            "s", [{"Data": b"after", "PartitionKey": "k", "ExplicitHashKey": "5"}]
        )

        it = (await client.get_shard_iterator("s", S0, "TRIM_HORIZON")).shard_iterator
        page = await client.get_records(it)
        assert [r.data for r in page.records] == [b"before"]
        if page.next_shard_iterator is not None:  # the end may come on the next call
            page = await client.get_records(page.next_shard_iterator)
            assert page.records == []
        assert page.next_shard_iterator is None
        children = page.child_shards
        assert sorted(c.shard_id for c in children) == [S1, S2]
        assert all(c.parent_shards == [S0] for c in children)
        assert [r.data for r in await read_all(client, "s", S1)] == [b"after"]

        await client.merge_shards("s", S1, S2)
        open_ids = [
            s.shard_id
            for s in (await client.list_shards("s", shard_filter={"Type": "AT_LATEST"})).shards
        ]
        assert open_ids == [S3]
        merged = await client.describe_stream("s")
        shard3 = merged.shards[-1]
        assert (shard3.parent_shard_id, shard3.adjacent_parent_shard_id) == (S1, S2)

        scaled = await client.update_shard_count("s", 2)
        assert (scaled.current_shard_count, scaled.target_shard_count) == (1, 2)
        assert (scaled.stream_name, scaled.stream_arn) == ("s", ARN + "s")
        summary = await client.describe_stream_summary("s")
        assert summary.open_shard_count == 2
