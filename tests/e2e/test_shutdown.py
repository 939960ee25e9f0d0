"""Graceful shutdown loses no acknowledged record."""

from __future__ import annotations

from pathlib import Path

import trio

from broker.client import Client
from broker.errors import ShardlineError

from .harness import read_all, serve

SHARDS = [f"shardId-00000000000{i}" for i in range(3)]


async def test_shutdown_while_putting_loses_no_acknowledged_record(tmp_path: Path) -> None:
    data = tmp_path / "data"
    acknowledged: dict[str, bytes] = {}
    async with serve(data, shutdown_timeout_s=5.0) as served:
        async with Client(served.endpoint) as admin:
            await admin.create_stream("s", 3)
        enough = trio.Event()

        async def producer(n: int) -> None:
            async with Client(served.endpoint, timeout=5.0) as client:
                for i in range(10_000):
                    data = [f"{n}:{i}:{j}".encode() for j in range(50)]
                    batch = [{"Data": d, "PartitionKey": f"{n}-{j}"} for j, d in enumerate(data)]
                    try:
                        put = await client.put_records("s", batch)
                    except (ShardlineError, OSError):
                        return  # the server is going away: what was acknowledged must stay
                    for value, result in zip(data, put.records, strict=True):
                        if result.sequence_number is not None:
                            acknowledged[result.sequence_number] = value
                    if len(acknowledged) >= 2_000:
                        enough.set()

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for n in range(4):
                    nursery.start_soon(producer, n)
                await enough.wait()
                served.server.shutdown()
                await served.stopped.wait()
    assert len(acknowledged) >= 2_000

    async with serve(data) as reopened, Client(reopened.endpoint) as client:
        stored: dict[str, bytes] = {}
        for shard in SHARDS:
            for record in await read_all(client, "s", shard):
                stored[record.sequence_number] = record.data
    missing = {seq: value for seq, value in acknowledged.items() if stored.get(seq) != value}
    assert missing == {}
