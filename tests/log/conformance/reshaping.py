"""Conformance: retention and resharding."""

from __future__ import annotations

import pytest
import trio

from broker.errors import (
    InvalidArgumentError,
    LimitExceededError,
    ResourceInUseError,
    ResourceNotFoundError,
    ShardClosedError,
)
from broker.hashing import ShardRouter, even_ranges
from broker.log import Log
from broker.model import (
    MAX_HASH_KEY,
    HashKeyRange,
    ShardState,
)
from broker.sequence import encode

from .base import (
    HOUR_MS,
    MAX_SHARDS,
    ConformanceBase,
    make_records,
    offsets,
    payloads,
    read_all,
)


class RetentionAndReshardingTests(ConformanceBase):
    """Retention and resharding."""

    # -- retention ------------------------------------------------------------------

    async def test_retention_trims_whole_old_batches(self) -> None:
        async with self.opened() as log:
            desc = await log.create_stream("s", 2)
            inc = desc.incarnation
            t0 = self.clock.now
            await log.append("s", {0: make_records(3, "a"), 1: make_records(1, "x")})
            self.clock.now = t0 + HOUR_MS
            await log.append("s", {0: make_records(2, "b")})
            self.clock.now = t0 + 2 * HOUR_MS
            await log.append("s", {0: make_records(2, "c")})
            # Exactly 24 hours old is not older than the retention.
            self.clock.now = t0 + 24 * HOUR_MS
            await log.maintain()
            assert log.tail("s", 0).horizon == 1
            assert len(read_all(log, "s", 0)) == 7
            # One millisecond more and the first batch goes, whole.
            self.clock.now = t0 + 24 * HOUR_MS + 1
            await log.maintain()  # fewer keys than a chunk: one step trims them all
            assert log.tail("s", 0).horizon == 4
            assert log.tail("s", 1).horizon == log.tail("s", 1).next_offset == 2
            assert log.resolve("s", 0, "TRIM_HORIZON") == 4
            assert payloads(read_all(log, "s", 0)) == make_records(2, "b") + make_records(2, "c")
            assert offsets(read_all(log, "s", 0, 1)) == [4, 5, 6, 7]
            # Positions below the horizon read from the horizon.
            for kind in ["AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"]:
                seq = encode(inc, 0, 2)
                assert log.resolve("s", 0, kind, sequence_number=seq) == 4
            assert log.resolve("s", 0, "AT_SEQUENCE_NUMBER", sequence_number=encode(inc, 0, 0)) == 4
            assert offsets(list(log.read("s", 0, 2, max_records=1).records())) == [4]
            batches, _ = log.read_batches("s", 0, 1)
            assert batches[0].first_offset == 4
            assert log.tail("s", 0).next_offset == 8
            # Everything old: the shard is empty but keeps counting.
            self.clock.now = t0 + 26 * HOUR_MS + 1
            await log.maintain()  # fewer keys than a chunk: one step trims them all
            assert log.tail("s", 0).horizon == 8
            assert log.resolve("s", 0, "TRIM_HORIZON") == log.resolve("s", 0, "LATEST") == 8
            assert read_all(log, "s", 0) == []
            result = await log.append("s", {0: make_records(1, "d"), 1: make_records(1, "y")})
            assert result.ranges == {0: (8, 1), 1: (2, 1)}
            assert log.tail("s", 0).horizon == 8
            assert offsets(read_all(log, "s", 0)) == [8]

    async def test_trim_in_chunks(self) -> None:
        async with self.opened(delete_chunk=2) as log:
            await log.create_stream("s", 3)
            t0 = self.clock.now
            for n in range(7):
                await log.append("s", {i: make_records(2, f"{n}.{i}") for i in range(3)})
            self.clock.advance(HOUR_MS)
            await log.append("s", {1: make_records(1, "young")})
            self.clock.now = t0 + 24 * HOUR_MS + 1

            def trimmed() -> bool:
                return all(log.tail("s", i).horizon == 15 for i in range(3))

            await self.settle(log, trimmed)
            assert read_all(log, "s", 0) == []
            assert payloads(read_all(log, "s", 1)) == make_records(1, "young")
            assert log.tail("s", 1).next_offset == 16

    async def test_retention_changes(self) -> None:
        async with self.opened() as log:
            await log.create_stream("s", 1)
            t0 = self.clock.now
            await log.append("s", {0: make_records(2)})
            desc = await log.increase_retention("s", 48)
            assert desc.retention_hours == 48 == log.describe("s").retention_hours
            for bad in [30, 8761, 23]:
                with pytest.raises(InvalidArgumentError):
                    await log.increase_retention("s", bad)
            for bad in [100, 23, 0]:
                with pytest.raises(InvalidArgumentError):
                    await log.decrease_retention("s", bad)
            with pytest.raises(ResourceNotFoundError):
                await log.increase_retention("nope", 48)
            assert log.describe("s").retention_hours == 48
            # 30 hours old: kept under 48 hours of retention ...
            self.clock.now = t0 + 30 * HOUR_MS
            await log.maintain()
            assert len(read_all(log, "s", 0)) == 2
            # ... and trimmed once the retention is 24 hours again.
            desc = await log.decrease_retention("s", 24)
            assert desc.retention_hours == 24
            await log.maintain()  # fewer keys than a chunk: one step trims them all
            assert log.tail("s", 0).horizon == 3
            assert read_all(log, "s", 0) == []
            desc = await log.increase_retention("s", 8760)
            assert desc.retention_hours == 8760

    # -- resharding ------------------------------------------------------------------

    async def test_split_shard(self) -> None:
        async with self.opened() as log:
            before = await log.create_stream("s", 2)
            await log.append("s", {0: make_records(3, "old"), 1: make_records(1)})
            parent = before.shard(0).hash_range
            key = (parent.start + parent.end) // 2
            desc = await log.split_shard("s", 0, key)
            assert log.describe("s") == desc
            closed = desc.shard(0)
            assert closed.state is ShardState.CLOSED
            assert closed.ending_offset == 3
            assert closed.hash_range == parent
            low, high = desc.shard(2), desc.shard(3)
            assert (low.shard_id, high.shard_id) == ("shardId-000000000002", "shardId-000000000003")
            assert low.hash_range == HashKeyRange(parent.start, key - 1)
            assert high.hash_range == HashKeyRange(key, parent.end)
            assert low.parents == high.parents == (0,)
            assert low.is_open and high.is_open
            assert sorted(s.index for s in desc.open_shards) == [1, 2, 3]
            assert desc.shard(1) == before.shard(1)
            # New writes route to the children; the closed shard refuses writes.
            routed = ShardRouter(desc.shards).group(make_records(200, "new"))
            assert 0 not in routed
            assert {2, 3} <= set(routed)
            with pytest.raises(ShardClosedError):
                await log.append("s", {0: make_records(1)})
            with pytest.raises(ShardClosedError):
                await log.append("s", {2: make_records(1), 0: make_records(1)})
            assert log.tail("s", 2).next_offset == 1
            result = await log.append("s", routed)
            assert result.ranges[2][0] == 1
            for index in (1, 2, 3):
                got = payloads(read_all(log, "s", index))
                assert got[-len(routed[index]) :] == routed[index]
            # The closed shard stays readable; reading it to its end reports the children.
            partial = log.read("s", 0, 0, max_records=2)
            assert offsets(list(partial.records())) == [1, 2]
            assert not partial.shard_end
            rest = log.read("s", 0, partial.next_offset)
            assert payloads(list(rest.records())) == make_records(3, "old")[2:]
            assert rest.shard_end
            assert [s.index for s in rest.child_shards] == [2, 3]
            whole = log.read("s", 0, log.resolve("s", 0, "TRIM_HORIZON"))
            assert whole.shard_end and whole.count == 3
            at_end = log.read("s", 0, log.resolve("s", 0, "LATEST"))
            assert at_end.count == 0 and at_end.shard_end
            assert {s.index for s in at_end.child_shards} == {2, 3}
            _, batch_result = log.read_batches("s", 0, 1)
            assert batch_result.shard_end
            open_read = log.read("s", 1, 0)
            assert not open_read.shard_end and open_read.child_shards == ()

    async def test_appends_racing_a_split(self) -> None:
        """Each append to the parent lands before its end, or is refused: none is lost."""
        landed: list[tuple[int, list[tuple[str, bytes]]]] = []
        refused = 0

        async def appender(log: Log, task: int) -> None:
            nonlocal refused
            for n in range(5):
                recs = make_records(2, f"t{task}.{n}")
                try:
                    result = await log.append("s", {0: recs})
                except ShardClosedError:
                    refused += 1
                else:
                    landed.append((result.ranges[0][0], recs))

        async with self.opened() as log:
            await log.create_stream("s", 1)
            async with trio.open_nursery() as nursery:
                for task in range(16):
                    nursery.start_soon(appender, log, task)
                await trio.lowlevel.checkpoint()
                desc = await log.split_shard("s", 0, 1 << 127)
            assert len(landed) + refused == 16 * 5
            ending = desc.shard(0).ending_offset
            assert ending == 2 * len(landed)
            expected = [r for _, recs in sorted(landed) for r in recs]
            result = log.read("s", 0, 0)
            assert payloads(list(result.records())) == expected
            assert result.shard_end

    async def test_split_refusals(self) -> None:
        async with self.opened() as log:
            desc = await log.create_stream("s", 2)
            r = desc.shard(0).hash_range
            for bad in [r.start, r.start + 1, r.end, r.end + 1, MAX_HASH_KEY, -1]:
                with pytest.raises(InvalidArgumentError):
                    await log.split_shard("s", 0, bad)
            assert log.describe("s") == desc
            with pytest.raises(ResourceNotFoundError):
                await log.split_shard("s", 9, r.start + 5)
            with pytest.raises(ResourceNotFoundError):
                await log.split_shard("nope", 0, r.start + 5)
            await log.split_shard("s", 0, r.start + 2)
            with pytest.raises(ResourceInUseError):
                await log.split_shard("s", 0, r.start + 5)

    async def test_split_an_empty_shard(self) -> None:
        async with self.opened() as log:
            await log.create_stream("s", 1)
            desc = await log.split_shard("s", 0, 1 << 127)
            assert desc.shard(0).ending_offset == 0
            result = log.read("s", 0, log.resolve("s", 0, "TRIM_HORIZON"))
            assert result.count == 0
            assert result.shard_end
            assert [s.index for s in result.child_shards] == [1, 2]
            ranges = sorted((s.hash_range for s in desc.open_shards), key=lambda h: h.start)
            assert ranges == [HashKeyRange(0, (1 << 127) - 1), HashKeyRange(1 << 127, MAX_HASH_KEY)]

    async def test_merge_shards(self) -> None:
        async with self.opened() as log:
            before = await log.create_stream("s", 3)
            await log.append("s", {1: make_records(2, "one"), 2: make_records(4, "two")})
            with pytest.raises(InvalidArgumentError):
                await log.merge_shards("s", 0, 2)  # not adjacent
            with pytest.raises(InvalidArgumentError):
                await log.merge_shards("s", 1, 1)
            with pytest.raises(ResourceNotFoundError):
                await log.merge_shards("s", 1, 8)
            assert log.describe("s") == before
            desc = await log.merge_shards("s", 2, 1)  # either order
            child = desc.shard(3)
            assert child.shard_id == "shardId-000000000003"
            assert set(child.parents) == {1, 2}
            assert child.hash_range == HashKeyRange(
                before.shard(1).hash_range.start, before.shard(2).hash_range.end
            )
            assert desc.shard(1).ending_offset == 2
            assert desc.shard(2).ending_offset == 4
            assert sorted(s.index for s in desc.open_shards) == [0, 3]
            with pytest.raises(ResourceInUseError):
                await log.merge_shards("s", 0, 1)
            with pytest.raises(ShardClosedError):
                await log.append("s", {1: make_records(1)})
            for index, tag, count in [(1, "one", 2), (2, "two", 4)]:
                result = log.read("s", index, 0)
                assert payloads(list(result.records())) == make_records(count, tag)
                assert result.shard_end
                assert [s.index for s in result.child_shards] == [3]
            routed = ShardRouter(desc.shards).group(make_records(100, "after"))
            assert set(routed) == {0, 3}
            await log.append("s", routed)
            assert payloads(read_all(log, "s", 3)) == routed[3]

    @pytest.mark.parametrize(
        ("start", "target"), [(4, 8), (4, 2), (3, 2), (2, 3), (5, 3), (3, 5), (4, 4), (1, 2)]
    )
    async def test_update_shard_count(self, start: int, target: int) -> None:
        async with self.opened() as log:
            before = await log.create_stream("s", start)
            await log.append("s", {i: make_records(i + 1, f"p{i}") for i in range(start)})
            desc = await log.update_shard_count("s", target)
            assert log.describe("s") == desc
            open_ranges = sorted((s.hash_range for s in desc.open_shards), key=lambda h: h.start)
            assert open_ranges == even_ranges(target)
            by_index = {s.index: s for s in desc.shards}
            for shard in desc.shards:
                assert len(shard.parents) <= 2
                for parent in shard.parents:
                    assert not by_index[parent].is_open
            for i in range(start):
                original = desc.shard(i)
                if original.is_open:
                    continue
                assert original.ending_offset == i + 1
                result = log.read("s", i, 0)
                assert payloads(list(result.records())) == make_records(i + 1, f"p{i}")
                assert result.shard_end
                assert result.child_shards
            assert len(desc.shards) >= len(before.shards)
            routed = ShardRouter(desc.shards).group(make_records(50, "n"))
            await log.append("s", routed)

    @pytest.mark.parametrize("target", [2, 3, 4, 5, 6])
    async def test_update_shard_count_from_uneven_shards(self, target: int) -> None:
        async with self.opened() as log:
            await log.create_stream("s", 2)
            await log.split_shard("s", 0, 1 << 125)  # open: [0, 2^125), [2^125, 2^127), upper
            await log.append("s", ShardRouter(log.describe("s").shards).group(make_records(30)))
            desc = await log.update_shard_count("s", target)
            open_ranges = sorted((s.hash_range for s in desc.open_shards), key=lambda h: h.start)
            assert open_ranges == even_ranges(target)
            by_index = {s.index: s for s in desc.shards}
            for shard in desc.shards:
                assert len(shard.parents) <= 2
                assert all(not by_index[p].is_open for p in shard.parents)
            # Every record written before is still where it was written.
            assert sum(len(read_all(log, "s", s.index)) for s in desc.shards) == 30

    async def test_split_beyond_the_shard_limit(self) -> None:
        async with self.opened() as log:
            desc = await log.create_stream("s", MAX_SHARDS)
            r = desc.shard(0).hash_range
            with pytest.raises(LimitExceededError):
                await log.split_shard("s", 0, (r.start + r.end) // 2)
            assert log.describe("s") == desc
            await log.merge_shards("s", 0, 1)  # one shard fewer: room for one split
            r = desc.shard(2).hash_range
            desc = await log.split_shard("s", 2, (r.start + r.end) // 2)
            assert len(desc.open_shards) == MAX_SHARDS

    async def test_update_shard_count_bounds(self) -> None:
        async with self.opened() as log:
            desc = await log.create_stream("s", 4)
            for bad in [9, 1, 0, -2]:
                with pytest.raises(InvalidArgumentError):
                    await log.update_shard_count("s", bad)
            assert log.describe("s") == desc
            await log.create_stream("big", 10)
            with pytest.raises(LimitExceededError):
                await log.update_shard_count("big", MAX_SHARDS + 1)
            with pytest.raises(ResourceNotFoundError):
                await log.update_shard_count("nope", 2)
            desc = await log.update_shard_count("s", 8)
            assert len(desc.open_shards) == 8
            desc = await log.update_shard_count("s", 4)
            assert len(desc.open_shards) == 4
            assert [s.hash_range for s in sorted(desc.open_shards, key=lambda s: s.index)] == [
                s.hash_range for s in log.describe("s").open_shards
            ]
