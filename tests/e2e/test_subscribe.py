"""Push subscriptions end to end: ``Client.subscribe_to_shard`` and ``consumers.subscriber``.

A real server with the real operation table (``SubscribeToShard`` and the
fan-out hub) on 127.0.0.1, with short subscription lifetimes and heartbeats
so that resubscription happens within a test. Every wait is bounded by
``trio.fail_after``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from broker.client import (
    Client,
    EndEvent,
    ErrorEvent,
    HeartbeatEvent,
    RecordsEvent,
    ShardEvents,
    records_of,
)
from broker.client.transport import STREAM_BUFFER
from broker.errors import InvalidArgumentError, ResourceInUseError, ResourceNotFoundError
from broker.operations import OPERATIONS
from consumers.subscriber import Backoff, ShardSubscriber, StreamSubscriber

from .harness import Served, serve

pytestmark = pytest.mark.skipif(
    "SubscribeToShard" not in OPERATIONS, reason="the broker has no SubscribeToShard handler"
)

S0 = "shardId-000000000000"
S1 = "shardId-000000000001"
S2 = "shardId-000000000002"
TRIM = {"Type": "TRIM_HORIZON"}
LIMIT_S = 30
FAST = Backoff(initial_s=0.05, max_s=0.5)


@dataclass
class Setup:
    served: Served
    client: Client
    consumer_arn: str


@asynccontextmanager
async def open_setup(served: Served, shards: int = 1) -> AsyncIterator[Setup]:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", shards)
        stream_arn = (await client.describe_stream_summary("s")).stream_arn
        consumer = await client.register_stream_consumer(stream_arn, "reader")
        yield Setup(served, client, consumer.consumer_arn)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async with (
        serve(
            tmp_path / "data",
            subscription_lifetime_s=30.0,
            subscription_heartbeat_s=0.05,
            subscription_takeover_window_s=0.5,
        ) as served,
        open_setup(served) as opened,
    ):
        yield opened


@pytest.fixture
async def short_lived(tmp_path: Path) -> AsyncIterator[Setup]:
    async with (
        serve(
            tmp_path / "data",
            subscription_lifetime_s=0.3,
            subscription_heartbeat_s=0.05,
            subscription_takeover_window_s=0.5,
        ) as served,
        open_setup(served) as opened,
    ):
        yield opened


async def put(client: Client, *datas: bytes, key: str = "k") -> list[str]:
    result = await client.put_records("s", [{"Data": d, "PartitionKey": key} for d in datas])
    return [entry.sequence_number or "" for entry in result.records]


async def records_from(events: ShardEvents, count: int) -> list[Any]:
    got: list[Any] = []
    with trio.fail_after(LIMIT_S):
        async for event in events:
            if isinstance(event, RecordsEvent):
                got += records_of(event)
                if len(got) >= count:
                    return got
    raise AssertionError(f"the subscription ended after {len(got)} of {count} records")


async def test_records_from_the_trim_horizon_then_from_the_tail(setup: Setup) -> None:
    client = setup.client
    before = await put(client, b"a", b"b", b"c")
    async with client.subscribe_to_shard(setup.consumer_arn, S0, TRIM) as events:
        stored = await records_from(events, 3)
        after = await put(client, b"d", b"e")
        tail = await records_from(events, 2)
    assert [r.sequence_number for r in stored + tail] == before + after
    assert [r.data for r in stored + tail] == [b"a", b"b", b"c", b"d", b"e"]
    assert all(r.partition_key == "k" for r in stored + tail)


async def test_latest_starts_where_the_shard_was_when_the_answer_came(setup: Setup) -> None:
    client = setup.client
    await put(client, b"old")
    async with client.subscribe_to_shard(setup.consumer_arn, S0, {"Type": "LATEST"}) as events:
        sequences = await put(client, b"new")
        [record] = await records_from(events, 1)
    assert (record.sequence_number, record.data) == (sequences[0], b"new")


async def test_heartbeats_carry_the_continuation_while_idle(setup: Setup) -> None:
    client = setup.client
    [sequence] = await put(client, b"a")
    async with client.subscribe_to_shard(setup.consumer_arn, S0, TRIM) as events:
        await records_from(events, 1)
        with trio.fail_after(LIMIT_S):
            event = await events.__anext__()
    assert isinstance(event, HeartbeatEvent)
    assert event.continuation_sequence == int(sequence)


async def test_errors_answered_before_streaming_are_raised(setup: Setup) -> None:
    client = setup.client
    unknown = setup.consumer_arn.replace("consumer/reader:", "consumer/nobody:")
    with pytest.raises(ResourceNotFoundError):
        async with client.subscribe_to_shard(unknown, S0, TRIM):
            pass
    with pytest.raises((ResourceNotFoundError, InvalidArgumentError)):
        async with client.subscribe_to_shard(setup.consumer_arn, "shardId-000000000042", TRIM):
            pass
    async with client.subscribe_to_shard(setup.consumer_arn, S0, TRIM):
        # A second subscription within the takeover window is refused.
        with pytest.raises(ResourceInUseError):
            async with client.subscribe_to_shard(setup.consumer_arn, S0, TRIM):
                pass


async def test_a_takeover_ends_the_old_subscription_with_an_error_event(setup: Setup) -> None:
    client = setup.client
    async with client.subscribe_to_shard(setup.consumer_arn, S0, TRIM) as old:
        await trio.sleep(0.5)  # the takeover window (0.5 s) passes
        async with (
            Client(setup.served.endpoint) as other,
            other.subscribe_to_shard(setup.consumer_arn, S0, TRIM),
        ):
            with trio.fail_after(LIMIT_S):
                events = [event async for event in old]
    assert isinstance(events[-1], ErrorEvent)
    assert events[-1].error_code == "ResourceInUseException"


async def test_the_subscriber_resumes_across_lifetimes_without_gaps(short_lived: Setup) -> None:
    client = short_lived.client
    sequences: list[str] = []
    got: list[Any] = []
    async with ShardSubscriber(
        client, short_lived.consumer_arn, S0, TRIM, backoff=FAST
    ) as subscriber:
        with trio.fail_after(LIMIT_S):
            while subscriber.subscriptions < 4:
                sequences += await put(client, *[b"%d" % len(sequences) for _ in range(3)])
                while len(got) < len(sequences):
                    event = await subscriber.__anext__()
                    if isinstance(event, RecordsEvent):
                        got += records_of(event)
    assert [r.sequence_number for r in got] == sequences
    assert subscriber.subscriptions >= 4


async def test_the_subscriber_comes_back_after_a_lost_connection(setup: Setup) -> None:
    client = setup.client
    first = await put(client, b"1", b"2")
    async with ShardSubscriber(client, setup.consumer_arn, S0, TRIM, backoff=FAST) as subscriber:
        got: list[Any] = []
        with trio.fail_after(LIMIT_S):
            while len(got) < 2:
                event = await subscriber.__anext__()
                if isinstance(event, RecordsEvent):
                    got += records_of(event)
            for connection in list(setup.served.server.connections):
                await trio.aclose_forcefully(connection.stream)
            second = await put(client, b"3", b"4")
            while len(got) < 4:
                event = await subscriber.__anext__()
                if isinstance(event, RecordsEvent):
                    got += records_of(event)
    assert [r.sequence_number for r in got] == first + second
    assert subscriber.subscriptions >= 2
    assert subscriber.last_error is not None


async def test_the_stream_subscriber_reads_a_split_shard_before_its_children(setup: Setup) -> None:
    client = setup.client
    parent = await put(client, *[b"p%d" % i for i in range(5)])
    got: list[tuple[str, str]] = []
    async with StreamSubscriber(client, "s", setup.consumer_arn, TRIM, backoff=FAST) as events:
        with trio.fail_after(LIMIT_S):
            async for shard_id, event in events:
                if isinstance(event, RecordsEvent):
                    got += [(shard_id, r.sequence_number) for r in records_of(event)]
                    if len(got) == 5:
                        await client.split_shard("s", S0, str(1 << 127))
                        children = await put(client, *[b"c%d" % i for i in range(20)])
                        low = await client.put_record("s", b"low", "k", explicit_hash_key="0")
                        children.append(low.sequence_number)
                elif isinstance(event, EndEvent):
                    assert shard_id == S0
                    assert sorted(c["ShardId"] for c in event.child_shards) == [S1, S2]
                if len(got) == 26:
                    break
    assert got[:5] == [(S0, s) for s in parent]
    assert {shard for shard, _ in got[5:]} <= {S1, S2}
    assert sorted(s for _, s in got[5:]) == sorted(children)


async def test_the_stream_subscriber_reads_both_parents_of_a_merge_first(tmp_path: Path) -> None:
    async with (
        serve(tmp_path / "data", subscription_heartbeat_s=0.05) as served,
        open_setup(served, shards=2) as setup,
    ):
        client = setup.client
        low = await client.put_record("s", b"low", "k", explicit_hash_key="0")
        high = await client.put_record("s", b"high", "k", explicit_hash_key=str(1 << 127))
        await client.merge_shards("s", S0, S1)
        merged = await put(client, b"m1", b"m2")
        got: list[tuple[str, bytes]] = []
        async with StreamSubscriber(client, "s", setup.consumer_arn, TRIM) as events:
            with trio.fail_after(LIMIT_S):
                async for shard_id, event in events:
                    if isinstance(event, RecordsEvent):
                        got += [(shard_id, r[2]) for r in event.records]
                    if len(got) == 4:
                        break
        assert set(got[:2]) == {(S0, b"low"), (S1, b"high")}
        assert got[2:] == [(S2, b"m1"), (S2, b"m2")]
        assert low.shard_id == S0 and high.shard_id == S1 and len(merged) == 2


async def test_an_unread_subscription_holds_its_buffer_bound_while_another_reads(
    setup: Setup,
) -> None:
    client = setup.client
    async with Client(setup.served.endpoint) as other_client:
        stream_arn = (await client.describe_stream_summary("s")).stream_arn
        other = (await client.register_stream_consumer(stream_arn, "other")).consumer_arn
        payload = b"x" * (64 * 1024)
        async with (
            client.subscribe_to_shard(setup.consumer_arn, S0, TRIM) as stalled,
            other_client.subscribe_to_shard(other, S0, TRIM) as reading,
        ):
            total = 0
            for _ in range(8):  # 8 MiB in 1 MiB requests
                await put(client, *[payload] * 16)
                total += 16
                got = await records_from(reading, 16)
                assert len(got) == 16
                assert stalled.statistics()["buffered_bytes"] <= STREAM_BUFFER
            # The unread one lost nothing: it reads everything now.
            with trio.fail_after(LIMIT_S):
                assert len(await records_from(stalled, total)) == total
