"""``Log.list_leases``: an application's leases on a stream, one key range, in shard order."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.errors import ResourceNotFoundError
from broker.log import LogConfig, open_log
from broker.log.keys import MAX_SHARD_INDEX

from .conformance import FakeClock


async def test_list_leases(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_log(
        tmp_path / "data", LogConfig(maintenance_interval=3600.0), clock=clock
    ) as log:
        await log.create_stream("s", 4)
        assert log.list_leases("s", "app") == []
        for index in (3, 0, 2):
            await log.acquire_lease("s", "app", index, f"w{index}", 1000)
        # Names that share a prefix with "app" live in other key ranges.
        await log.acquire_lease("s", "ap", 1, "x", 1000)
        await log.acquire_lease("s", "app2", 1, "x", 1000)
        every = log.list_leases("s", "app")
        assert [(x.shard_index, x.owner) for x in every] == [(0, "w0"), (2, "w2"), (3, "w3")]
        assert every == [log.get_lease("s", "app", i) for i in (0, 2, 3)]
        assert [x.shard_index for x in log.list_leases("s", "app", after=0)] == [2, 3]
        assert [x.shard_index for x in log.list_leases("s", "app", after=2, limit=5)] == [3]
        assert [x.shard_index for x in log.list_leases("s", "app", limit=2)] == [0, 2]
        assert log.list_leases("s", "app", after=3) == []
        assert log.list_leases("s", "app", limit=0) == []
        assert log.list_leases("s", "app", after=MAX_SHARD_INDEX) == []
        assert [x.shard_index for x in log.list_leases("s", "ap")] == [1]
        # Released leases are listed: they keep their counter.
        released = await log.release_lease(every[0])
        assert log.list_leases("s", "app", limit=1) == [released]
        await log.delete_stream("s")
        with pytest.raises(ResourceNotFoundError):
            log.list_leases("s", "app")
        await log.create_stream("s", 4)
        assert log.list_leases("s", "app") == []
