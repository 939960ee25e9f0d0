"""Fan-out end to end: ten readers of one shard, a stalled one, a vanished one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio
import trio.testing

from broker.client import Client, RecordsEvent, records_of
from broker.fanout.hub import FanoutHub
from consumers.subscriber import Backoff, ShardSubscriber

from .harness import Served, serve

S0 = "shardId-000000000000"
TRIM = {"Type": "TRIM_HORIZON"}
FAST = Backoff(initial_s=0.05, max_s=0.5)
LIMIT_S = 60


async def consumers(client: Client, count: int) -> list[str]:
    await client.create_stream("s", 1)
    arn = (await client.describe_stream_summary("s")).stream_arn
    return [
        (await client.register_stream_consumer(arn, f"reader-{i}")).consumer_arn
        for i in range(count)
    ]


def hub_of(served: Served) -> FanoutHub:
    hub = served.broker.extras["fanout"]
    assert isinstance(hub, FanoutHub)
    return hub


async def test_ten_subscribers_get_every_record_in_order_across_lifetimes(tmp_path: Path) -> None:
    async with (
        serve(
            tmp_path / "data",
            subscription_lifetime_s=0.4,
            subscription_heartbeat_s=0.05,
            subscription_takeover_window_s=0.2,
        ) as served,
        Client(served.endpoint) as client,
    ):
        arns = await consumers(client, 10)
        total = 600
        received: dict[int, list[str]] = {i: [] for i in range(10)}
        resubscribed: dict[int, int] = {}
        sent: list[str] = []

        async def read(i: int) -> None:
            async with (
                Client(served.endpoint) as own,
                ShardSubscriber(own, arns[i], S0, TRIM, backoff=FAST) as subscriber,
            ):
                while len(received[i]) < total:
                    event = await subscriber.__anext__()
                    if isinstance(event, RecordsEvent):
                        received[i] += [r.sequence_number for r in records_of(event)]
                resubscribed[i] = subscriber.subscriptions

        with trio.fail_after(LIMIT_S):
            async with trio.open_nursery() as nursery:
                for i in range(10):
                    nursery.start_soon(read, i)
                for n in range(60):  # spread over several lifetimes of 0.4 s
                    result = await client.put_records(
                        "s",
                        [{"Data": b"%d" % (n * 10 + j), "PartitionKey": "k"} for j in range(10)],
                    )
                    sent += [entry.sequence_number or "" for entry in result.records]
                    await trio.sleep(0.02)  # the producer's pace, not a wait for a condition
        for i in range(10):
            assert received[i] == sent, f"subscriber {i}: a gap, a duplicate or a reordering"
        assert min(resubscribed.values()) >= 2, "every subscriber lived through a lifetime's end"


async def test_a_stalled_subscriber_costs_the_others_nothing(tmp_path: Path) -> None:
    async with (
        serve(
            tmp_path / "data",
            subscription_heartbeat_s=0.05,
            fanout_tail_bytes=256 * 1024,
            fanout_budget_bytes=8 * 1024 * 1024,
        ) as served,
        Client(served.endpoint) as client,
        Client(served.endpoint) as stalled_client,
    ):
        arns = await consumers(client, 10)
        payload = b"x" * 4000
        batches = 40  # 40 x 100 records x 4 KB: 16 MB, far past the feed and the windows

        async def read(i: int, done: list[int]) -> None:
            async with (
                Client(served.endpoint) as own,
                own.subscribe_to_shard(arns[i], S0, TRIM) as events,
            ):
                async for event in events:
                    if isinstance(event, RecordsEvent):
                        done[0] += len(event.records)
                        if done[0] >= batches * 100:
                            return

        counts = [[0] for _ in range(9)]
        async with stalled_client.subscribe_to_shard(arns[9], S0, TRIM) as stalled:  # unread
            with trio.fail_after(LIMIT_S):
                async with trio.open_nursery() as nursery:
                    for i in range(9):
                        nursery.start_soon(read, i, counts[i])
                    for _ in range(batches):
                        await client.put_records(
                            "s", [{"Data": payload, "PartitionKey": "k"}] * 100
                        )
                        hub = hub_of(served)
                        assert hub.budget.held <= hub.budget.total
                        assert all(f.nbytes <= 256 * 1024 + 500_000 for f in hub.feeds.values())
            assert all(c[0] == batches * 100 for c in counts)
            stats = hub_of(served).statistics()
            assert stats["read_bytes_held"] <= 8 * 1024 * 1024
            # Far behind the feed now, it reads from LMDB and gets everything in order.
            sequences: list[int] = []
            with trio.fail_after(LIMIT_S):
                async for event in stalled:
                    if isinstance(event, RecordsEvent):
                        sequences += [event.first_sequence + i for i in range(len(event.records))]
                        if len(sequences) == batches * 100:
                            break
            assert sequences == list(range(sequences[0], sequences[0] + batches * 100))


CHILD = """
import sys, trio
from broker.client import Client
async def main():
    async with Client(sys.argv[1]) as client:
        latest = {"Type": "LATEST"}
        async with client.subscribe_to_shard(sys.argv[2], "shardId-000000000000", latest):
            print("ready", flush=True)
            await trio.sleep_forever()
trio.run(main)
"""


async def test_a_killed_client_releases_what_its_subscription_held(tmp_path: Path) -> None:
    async with (
        serve(tmp_path / "data", subscription_heartbeat_s=0.05) as served,
        Client(served.endpoint) as client,
    ):
        (arn,) = await consumers(client, 1)
        with trio.fail_after(LIMIT_S):
            process = await trio.lowlevel.open_process(
                [sys.executable, "-c", CHILD, served.endpoint, arn], stdout=subprocess.PIPE
            )
            assert process.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                line += await process.stdout.receive_some(64)
            assert line.strip() == b"ready"
            await trio.testing.wait_all_tasks_blocked()  # the broker's side settled too
            hub = hub_of(served)
            assert hub.statistics()["subscriptions"] == 1 and hub.statistics()["feeds"] == 1
            assert "shardline_fanout_subscriptions 1\n" in await client.metrics()
            process.kill()  # SIGKILL: nothing is closed politely
            await process.wait()
            while hub.statistics()["subscriptions"] or hub.feeds:
                await hub.ended.wait()  # the server notices at its next heartbeat
        assert hub.statistics() == {
            "subscriptions": 0,
            "feeds": 0,
            "feed_bytes": 0,
            "read_bytes_held": 0,
        }
        assert "shardline_fanout_subscriptions 0\n" in await client.metrics()


async def test_shutdown_ends_subscriptions_at_once(tmp_path: Path) -> None:
    async with (
        serve(tmp_path / "data", subscription_heartbeat_s=60.0) as served,
        Client(served.endpoint) as client,
    ):
        (arn,) = await consumers(client, 1)
        async with (
            Client(served.endpoint) as reader,
            reader.subscribe_to_shard(arn, S0, TRIM) as events,
        ):
            await trio.testing.wait_all_tasks_blocked()
            served.server.shutdown()
            with trio.fail_after(10):  # long before a heartbeat or the lifetime
                remaining = [event async for event in events]
                await served.stopped.wait()
        assert remaining == []  # a clean end: no error event, subscribe again elsewhere
