"""Client.read_pages: every record in order, one page read ahead, no polling when caught up."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from broker.client import Client
from broker.errors import InvalidArgumentError
from tests.server.harness import Running

S0 = "shardId-000000000000"


def get_records_served(running: Running) -> int:
    return running.server.metrics.requests.get(("GetRecords", "ok"), 0)


async def fill(client: Client, count: int, per_request: int = 7) -> None:
    await client.create_stream("s", 1)
    for start in range(0, count, per_request):
        records = [
            {"Data": str(i).encode(), "PartitionKey": "k"}
            for i in range(start, min(count, start + per_request))
        ]
        await client.put_records("s", records)


async def test_pages_in_order_to_the_end_of_a_closed_shard(running: Running) -> None:
    async with Client(running.endpoint) as client:
        await fill(client, 50)
        await client.split_shard("s", S0, str(1 << 127))
        it = (await client.get_shard_iterator("s", S0, "TRIM_HORIZON")).shard_iterator
        seen: list[bytes] = []
        pages = 0
        with trio.fail_after(10):
            async with client.read_pages(it, limit=8) as reader:
                async for page in reader:
                    seen += [r.data for r in page.records]
                    pages += 1
        assert seen == [str(i).encode() for i in range(50)]
        assert pages == 7  # 6 full pages of 8, then 2 records and the shard's end
        assert page.next_shard_iterator is None and len(page.child_shards) == 2


async def test_the_next_page_is_requested_before_this_one_is_handled(running: Running) -> None:
    async with Client(running.endpoint) as client:
        await fill(client, 40)
        it = (await client.get_shard_iterator("s", S0, "TRIM_HORIZON")).shard_iterator
        before = get_records_served(running)
        async with client.read_pages(it, limit=10) as reader:
            first = await reader.__anext__()
            assert [r.data for r in first.records] == [str(i).encode() for i in range(10)]
            # Holding the first page: the second is fetched, and no third (one ahead).
            await trio.testing.wait_all_tasks_blocked()
            assert get_records_served(running) - before == 2
            second = await reader.__anext__()
            assert [r.data for r in second.records] == [str(i).encode() for i in range(10, 20)]


async def test_caught_up_it_waits_instead_of_polling(running: Running) -> None:
    async with Client(running.endpoint) as client:
        await fill(client, 3)
        it = (await client.get_shard_iterator("s", S0, "TRIM_HORIZON")).shard_iterator
        before = get_records_served(running)
        async with client.read_pages(it, idle_wait=3600) as reader:
            page = await reader.__anext__()
            assert len(page.records) == 3 and page.millis_behind_latest == 0
            await trio.testing.wait_all_tasks_blocked()
            assert get_records_served(running) - before == 1


async def test_wire_maps_are_the_stored_batches(running: Running) -> None:
    async with Client(running.endpoint) as client:
        await fill(client, 20, per_request=5)
        await client.split_shard("s", S0, str(1 << 127))
        it = (await client.get_shard_iterator("s", S0, "TRIM_HORIZON")).shard_iterator
        data: list[bytes] = []
        async with client.read_pages(it) as reader:
            async for body in reader.wire_maps():
                for batch in body["Batches"]:
                    data += [d for _arrival, _key, d in batch["Records"]]
        assert data == [str(i).encode() for i in range(20)]


async def test_an_error_reaches_the_reader(running: Running) -> None:
    async with (
        Client(running.endpoint) as client,
        client.read_pages("not-an-iterator") as reader,
    ):
        with pytest.raises(InvalidArgumentError):
            await reader.__anext__()
