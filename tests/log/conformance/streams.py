"""Conformance: streams and appends."""

from __future__ import annotations

import random

import pytest
import trio

from broker.errors import (
    InvalidArgumentError,
    ResourceInUseError,
    ResourceNotFoundError,
)
from broker.log import Log
from broker.model import (
    MAX_HASH_KEY,
    ShardState,
    StreamStatus,
)
from broker.sequence import encode

from .base import (
    MAX_SHARDS,
    ConformanceBase,
    make_records,
    offsets,
    payloads,
    read_all,
)


class StreamTests(ConformanceBase):
    """Streams and appends."""

    # -- streams --------------------------------------------------------------

    async def test_create_describe_list(self) -> None:
        async with self.opened() as log:
            assert log.list_streams() == []
            desc = await log.create_stream("orders", 3)
            assert desc.name == "orders"
            assert desc.status is StreamStatus.ACTIVE
            assert desc.retention_hours == 24
            assert desc.created_ms == self.clock.now
            assert [s.shard_id for s in desc.shards] == [
                "shardId-000000000000",
                "shardId-000000000001",
                "shardId-000000000002",
            ]
            assert [s.index for s in desc.shards] == [0, 1, 2]
            for shard in desc.shards:
                assert shard.state is ShardState.OPEN
                assert shard.parents == ()
                assert shard.ending_offset is None
                assert log.tail("orders", shard.index).next_offset == 1
            assert log.describe("orders") == desc
            await log.create_stream("Zeta", 1)
            await log.create_stream("alpha.b-c_9", 1)
            assert log.list_streams() == sorted(["orders", "Zeta", "alpha.b-c_9"])

    @pytest.mark.parametrize("count", [1, 2, 3, 7, 16])
    async def test_hash_ranges_split_evenly(self, count: int) -> None:
        async with self.opened() as log:
            desc = await log.create_stream("s", count)
        step = (MAX_HASH_KEY + 1) // count
        ranges = [s.hash_range for s in desc.shards]
        assert len(ranges) == count
        assert ranges[0].start == 0
        assert ranges[-1].end == MAX_HASH_KEY == 2**128 - 1
        for i, r in enumerate(ranges):
            assert r.start == i * step
            if i < count - 1:
                assert r.end == (i + 1) * step - 1
                assert ranges[i + 1].start == r.end + 1

    async def test_stream_names(self) -> None:
        async with self.opened() as log:
            for good in ["a", "A" * 128, "x.y-z_0"]:
                desc = await log.create_stream(good, 1)
                assert desc.name == good
            for bad in ["", "a" * 129, "has space", "slash/name", "é", "colon:name"]:
                with pytest.raises(InvalidArgumentError):
                    await log.create_stream(bad, 1)
                assert bad not in log.list_streams()

    async def test_create_twice_is_in_use(self) -> None:
        async with self.opened() as log:
            first = await log.create_stream("s", 2)
            with pytest.raises(ResourceInUseError):
                await log.create_stream("s", 5)
            assert log.describe("s") == first

    async def test_shard_count_bounds(self) -> None:
        async with self.opened() as log:
            for bad in [0, -1, MAX_SHARDS + 1, True]:
                with pytest.raises(InvalidArgumentError):
                    await log.create_stream("s", bad)
            assert log.list_streams() == []
            desc = await log.create_stream("s", MAX_SHARDS)
            assert len(desc.shards) == MAX_SHARDS

    async def test_create_retention_bounds(self) -> None:
        async with self.opened() as log:
            for bad in [23, 8761, 0]:
                with pytest.raises(InvalidArgumentError):
                    await log.create_stream("s", 1, retention_hours=bad)
            desc = await log.create_stream("s", 1, retention_hours=8760)
            assert desc.retention_hours == 8760

    async def test_delete_stream(self) -> None:
        async with self.opened() as log:
            await log.create_stream("gone", 2)
            await log.create_stream("kept", 1)
            await log.append("gone", {0: make_records(3)})
            await log.delete_stream("gone")
            assert log.list_streams() == ["kept"]
            with pytest.raises(ResourceNotFoundError):
                log.describe("gone")
            with pytest.raises(ResourceNotFoundError):
                log.read("gone", 0, 0)
            with pytest.raises(ResourceNotFoundError):
                log.resolve("gone", 0, "TRIM_HORIZON")
            with pytest.raises(ResourceNotFoundError):
                await log.append("gone", {0: make_records(1)})
            with pytest.raises(ResourceNotFoundError):
                await log.delete_stream("gone")
            with pytest.raises(ResourceNotFoundError):
                await log.delete_stream("never")
            assert log.describe("kept").name == "kept"

    async def test_unknown_stream_and_shard(self) -> None:
        async with self.opened() as log:
            with pytest.raises(ResourceNotFoundError):
                log.describe("nope")
            with pytest.raises(ResourceNotFoundError):
                await log.append("nope", {0: make_records(1)})
            await log.create_stream("s", 2)
            with pytest.raises(ResourceNotFoundError):
                log.read("s", 2, 0)
            with pytest.raises(ResourceNotFoundError):
                log.resolve("s", 7, "LATEST")
            with pytest.raises(ResourceNotFoundError):
                log.tail("s", 2)
            with pytest.raises(ResourceNotFoundError):
                await log.append("s", {2: make_records(1)})
            with pytest.raises(ResourceNotFoundError):
                log.read_batches("s", 9, 0)

    # -- appends ------------------------------------------------------------

    async def test_append_to_many_shards_at_once(self) -> None:
        async with self.opened() as log:
            desc = await log.create_stream("s", 4)
            first = {0: make_records(3, "a"), 1: make_records(1, "b"), 3: make_records(5, "c")}
            result = await log.append("s", first)
            assert result.incarnation == desc.incarnation
            assert result.ranges == {0: (1, 3), 1: (1, 1), 3: (1, 5)}
            second = {3: make_records(2, "d"), 0: make_records(2, "e")}
            result = await log.append("s", second)
            assert result.ranges == {0: (4, 2), 3: (6, 2)}
            expected = {
                0: first[0] + second[0],
                1: first[1],
                2: [],
                3: first[3] + second[3],
            }
            for index, recs in expected.items():
                rows = read_all(log, "s", index)
                assert payloads(rows) == recs
                assert offsets(rows) == list(range(1, len(recs) + 1))
                tail = log.tail("s", index)
                assert tail.next_offset == len(recs) + 1
                assert tail.horizon == 1

    async def test_sequence_numbers(self) -> None:
        async with self.opened() as log:
            desc = await log.create_stream("s", 3)
            result = await log.append("s", {1: make_records(4), 2: make_records(2)})
            inc = desc.incarnation
            seqs = [encode(inc, 1, offset) for offset in range(1, 5)]
            assert [int(s) for s in seqs] == [(inc << 96) | (1 << 64) | o for o in range(1, 5)]
            assert sorted(seqs, key=int) == seqs
            first, count = result.ranges[1]
            for i in range(count):
                seq = encode(inc, 1, first + i)
                offset = log.resolve("s", 1, "AT_SEQUENCE_NUMBER", sequence_number=seq)
                assert offset == first + i
                rows = list(log.read("s", 1, offset, max_records=1).records())
                assert payloads(rows) == [make_records(4)[i]]
            # A shard's starting sequence number is its offset 0: reading AT it
            # starts at the oldest record.
            start = encode(inc, 2, 0)
            assert log.resolve("s", 2, "AT_SEQUENCE_NUMBER", sequence_number=start) == 1

    async def test_arrival_times_never_decrease_within_a_shard(self) -> None:
        async with self.opened() as log:
            await log.create_stream("s", 2)
            t0 = self.clock.now
            await log.append("s", {0: make_records(2, "a")})
            self.clock.advance(5)
            await log.append("s", {0: make_records(2, "b"), 1: make_records(1, "c")})
            self.clock.advance(-1000)  # the wall clock steps back
            await log.append("s", {0: make_records(2, "d")})
            arrivals = [row[1] for row in read_all(log, "s", 0)]
            assert arrivals == [t0, t0, t0 + 5, t0 + 5, t0 + 5, t0 + 5]
            assert log.tail("s", 0).last_arrival_ms == arrivals[-1]
            assert [row[1] for row in read_all(log, "s", 1)] == [t0 + 5]
        self.clock.advance(-5000)
        async with self.opened() as log:
            await log.append("s", {0: make_records(1, "e")})
            arrivals = [row[1] for row in read_all(log, "s", 0)]
            assert arrivals == sorted(arrivals)
            assert arrivals[-1] >= t0 + 5

    async def test_failed_append_writes_nothing(self) -> None:
        async with self.opened() as log:
            desc = await log.create_stream("s", 2)
            await log.append("s", {0: make_records(2)})
            with pytest.raises(ResourceNotFoundError):
                await log.append("s", {0: make_records(3, "x"), 5: make_records(1, "y")})
            with pytest.raises(InvalidArgumentError):
                await log.append("s", {})
            with pytest.raises(InvalidArgumentError):
                await log.append("s", {0: []})
            with pytest.raises(ResourceNotFoundError):
                await log.append("s", {0: make_records(1)}, incarnation=desc.incarnation + 1)
            assert payloads(read_all(log, "s", 0)) == make_records(2)
            assert log.tail("s", 0).next_offset == 3
            assert log.tail("s", 1).next_offset == 1
            result = await log.append("s", {0: make_records(1, "z")}, incarnation=desc.incarnation)
            assert result.ranges == {0: (3, 1)}

    async def test_concurrent_appenders_get_distinct_contiguous_ranges(self) -> None:
        shards, tasks, appends = 4, 24, 8
        landed: list[tuple[int, int, int, list[tuple[str, bytes]]]] = []

        async def appender(log: Log, task: int) -> None:
            rng = random.Random(task)
            for n in range(appends):
                chosen = rng.sample(range(shards), rng.randint(1, shards))
                batch = {i: make_records(rng.randint(1, 6), f"t{task}.{n}.{i}") for i in chosen}
                result = await log.append("s", batch)
                for index, (first, count) in result.ranges.items():
                    assert count == len(batch[index])
                    landed.append((index, first, count, batch[index]))

        async with self.opened() as log:
            await log.create_stream("s", shards)
            async with trio.open_nursery() as nursery:
                for task in range(tasks):
                    nursery.start_soon(appender, log, task)
        assert len(landed) > tasks * appends
        async with self.opened() as log:  # acknowledged means durable
            for index in range(shards):
                mine = sorted(
                    (first, count, recs) for i, first, count, recs in landed if i == index
                )
                position = 1
                expected: list[tuple[str, bytes]] = []
                for first, count, recs in mine:
                    assert first == position, "ranges must be contiguous and never overlap"
                    position += count
                    expected += recs
                assert log.tail("s", index).next_offset == position
                assert payloads(read_all(log, "s", index)) == expected
