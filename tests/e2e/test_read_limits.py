"""Optional per-shard GetRecords limits answer ProvisionedThroughputExceededException."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.client import Client
from broker.errors import ProvisionedThroughputExceededError

from .harness import ManualClock, serve

S0 = "shardId-000000000000"


async def test_read_calls_per_second(tmp_path: Path) -> None:
    clock = ManualClock()
    async with (
        serve(tmp_path / "data", clock=clock, shard_read_calls_per_s=2) as served,
        Client(served.endpoint) as client,
    ):
        await client.create_stream("s", 2)
        it = (await client.get_shard_iterator("s", S0, "TRIM_HORIZON")).shard_iterator
        await client.get_records(it)
        await client.get_records(it)
        with pytest.raises(ProvisionedThroughputExceededError) as caught:
            await client.get_records(it)
        assert caught.value.retriable
        other = (
            await client.get_shard_iterator("s", "shardId-000000000001", "LATEST")
        ).shard_iterator
        await client.get_records(other)  # the other shard has its own budget
        clock.advance(0.5)
        await client.get_records(it)
        with pytest.raises(ProvisionedThroughputExceededError):
            await client.get_records(it)
        with pytest.raises(Exception) as bad:  # a bad iterator still gets its own error
            await client.get_records("garbage")
        assert type(bad.value).__name__ == "InvalidArgumentError"


async def test_read_bytes_per_second(tmp_path: Path) -> None:
    clock = ManualClock()
    async with (
        serve(tmp_path / "data", clock=clock, shard_read_bytes_per_s=1000) as served,
        Client(served.endpoint) as client,
    ):
        await client.create_stream("s", 1)
        await client.put_records("s", [{"Data": b"x" * 999, "PartitionKey": "k"}] * 5)
        it = (await client.get_shard_iterator("s", S0, "TRIM_HORIZON")).shard_iterator
        page = await client.get_records(it)  # 5,000 bytes: 4,000 of debt at 1,000 bytes/s
        assert len(page.records) == 5
        assert page.next_shard_iterator is not None
        clock.advance(3.0)
        with pytest.raises(ProvisionedThroughputExceededError):
            await client.get_records(page.next_shard_iterator)
        clock.advance(1.5)
        assert (await client.get_records(page.next_shard_iterator)).records == []
