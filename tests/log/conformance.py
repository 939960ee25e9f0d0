"""A conformance suite for the log: what every implementation of ``Log`` must do.

The pattern is ZODB's ``BasicStorage``: ``LogConformance`` is a base class of
test methods that never names an implementation. A test module subclasses it
(under a ``Test...`` name, so that pytest collects it) and implements
``open_log(path, config, clock)``, returning an async context manager that
opens a log on ``path`` and closes it on exit. Every test opens its log through
``self.opened()``, so it can close it and open it again on the same directory
to check what survives.

Time comes from ``self.clock``, a ``FakeClock`` the tests move by hand: nothing
sleeps and nothing waits for real time. Implementations that can count the
keys they still store for a stream incarnation override ``stored_keys`` so
that deletion is checked down to the storage; the default skips that part.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from broker.errors import (
    DataDirectoryLockedError,
    InvalidArgumentError,
    LeaseLostError,
    LimitExceededError,
    ResourceInUseError,
    ResourceNotFoundError,
    ShardClosedError,
)
from broker.hashing import ShardRouter, even_ranges
from broker.log import Log, LogConfig
from broker.model import (
    MAX_HASH_KEY,
    SHARD_END,
    HashKeyRange,
    ShardState,
    StreamDescription,
    StreamStatus,
)
from broker.sequence import encode

HOUR_MS = 3_600_000
MAX_SHARDS = 16

#: One record as a test sees it: (offset, arrival_ms, partition_key, data).
Row = tuple[int, int, str, bytes]


class FakeClock:
    """Milliseconds that move only when a test says so."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now


def make_records(count: int, tag: str = "r", size: int = 0) -> list[tuple[str, bytes]]:
    """``count`` distinct ``(partition_key, data)`` pairs; ``size`` pads the data."""
    return [(f"{tag}-{i}", f"{tag}:{i}:".encode().ljust(size, b".")) for i in range(count)]


def read_all(log: Log, stream: str, index: int, offset: int = 0, **bounds: int) -> list[Row]:
    """Every record from ``offset`` to the shard's end, read in as many reads as it takes."""
    rows: list[Row] = []
    for _ in range(100_000):
        result = log.read(stream, index, offset, **bounds)
        rows.extend(result.records())
        if result.count == 0:
            return rows
        assert result.next_offset > offset
        offset = result.next_offset
    raise AssertionError("read_all did not reach the end of the shard")


def payloads(rows: Sequence[Row]) -> list[tuple[str, bytes]]:
    return [(key, data) for _, _, key, data in rows]


def offsets(rows: Sequence[Row]) -> list[int]:
    return [row[0] for row in rows]


class LogConformance:
    """The suite. Subclass it and implement ``open_log``; see the module docstring."""

    path: str
    clock: FakeClock

    # -- what an implementation provides -------------------------------------

    def open_log(
        self, path: str, config: LogConfig, clock: Callable[[], int]
    ) -> AbstractAsyncContextManager[Log]:
        raise NotImplementedError

    def stored_keys(self, log: Log, incarnation: int) -> int | None:
        """How many stored keys still belong to a stream incarnation; None: cannot tell."""
        return None

    # -- helpers --------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _conformance_setup(self, tmp_path: Path) -> None:
        self.path = str(tmp_path / "log")
        self.clock = FakeClock()

    def config(self, **changes: Any) -> LogConfig:
        # Maintenance runs only when a test asks for it (``maintain``), so that
        # what it trims depends on the fake clock alone.
        settings: dict[str, Any] = {
            "max_shards_per_stream": MAX_SHARDS,
            "maintenance_interval": 1e9,
        }
        settings.update(changes)
        return LogConfig(**settings)

    def opened(self, **changes: Any) -> AbstractAsyncContextManager[Log]:
        return self.open_log(self.path, self.config(**changes), self.clock)

    async def settle(self, log: Log, done: Callable[[], bool], limit: int = 500) -> int:
        """Run maintenance steps until ``done()``; how many it took.

        For work larger than one ``delete_chunk``, which maintenance spreads
        over several commits.
        """
        for step in range(1, limit + 1):
            await log.maintain()
            if done():
                return step
        raise AssertionError(f"maintenance did not finish in {limit} steps")

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

    # -- positions --------------------------------------------------------------

    async def _three_batches(self, log: Log) -> StreamDescription:
        """Stream ``s`` whose shard 0 holds offsets 1..12 in three appends of four."""
        desc = await log.create_stream("s", 2)
        for n in range(3):
            await log.append("s", {0: make_records(4, f"b{n}")})
            self.clock.advance(10)
        return desc

    def _all_records(self) -> list[tuple[str, bytes]]:
        return [r for n in range(3) for r in make_records(4, f"b{n}")]

    async def test_trim_horizon_and_latest(self) -> None:
        async with self.opened() as log:
            await self._three_batches(log)
            # Shard 1 is empty: both positions are offset 1, and nothing is there.
            assert log.resolve("s", 1, "TRIM_HORIZON") == 1
            assert log.resolve("s", 1, "LATEST") == 1
            empty = log.read("s", 1, 1)
            assert empty.count == 0
            assert empty.next_offset == 1
            assert not empty.shard_end
            assert log.resolve("s", 0, "TRIM_HORIZON") == 1
            assert log.resolve("s", 0, "LATEST") == 13
            assert log.read("s", 0, 13).count == 0
            rows = read_all(log, "s", 0, log.resolve("s", 0, "TRIM_HORIZON"))
            assert payloads(rows) == self._all_records()
            result = await log.append("s", {0: make_records(2, "new")})
            assert result.ranges[0] == (13, 2)
            assert payloads(read_all(log, "s", 0, 13)) == make_records(2, "new")
            assert log.resolve("s", 0, "LATEST") == 15

    async def test_at_and_after_sequence_number(self) -> None:
        async with self.opened() as log:
            desc = await self._three_batches(log)
            every = self._all_records()
            inc = desc.incarnation
            for offset in range(0, 13):
                seq = encode(inc, 0, offset)
                at = log.resolve("s", 0, "AT_SEQUENCE_NUMBER", sequence_number=seq)
                after = log.resolve("s", 0, "AFTER_SEQUENCE_NUMBER", sequence_number=seq)
                assert at == max(offset, 1)
                assert after == offset + 1
                # Reading from inside a batch gets exactly the records from there.
                rows = read_all(log, "s", 0, at)
                assert offsets(rows) == list(range(at, 13))
                assert payloads(rows) == every[at - 1 :]
                rows = list(log.read("s", 0, after, max_records=2).records())
                assert offsets(rows) == list(range(after, min(after + 2, 13)))
            # The newest record + 1 is a valid position (nothing there yet) ...
            newest_plus_one = encode(inc, 0, 13)
            assert log.resolve("s", 0, "AT_SEQUENCE_NUMBER", sequence_number=newest_plus_one) == 13
            newest = encode(inc, 0, 12)
            assert log.resolve("s", 0, "AFTER_SEQUENCE_NUMBER", sequence_number=newest) == 13
            # ... anything beyond is refused.
            with pytest.raises(InvalidArgumentError):
                log.resolve("s", 0, "AT_SEQUENCE_NUMBER", sequence_number=encode(inc, 0, 14))
            with pytest.raises(InvalidArgumentError):
                log.resolve("s", 0, "AFTER_SEQUENCE_NUMBER", sequence_number=newest_plus_one)
            # Shard 1 is empty: only its offsets 0 and 1 are valid.
            assert log.resolve("s", 1, "AT_SEQUENCE_NUMBER", sequence_number=encode(inc, 1, 0)) == 1
            assert (
                log.resolve("s", 1, "AFTER_SEQUENCE_NUMBER", sequence_number=encode(inc, 1, 0)) == 1
            )
            with pytest.raises(InvalidArgumentError):
                log.resolve("s", 1, "AFTER_SEQUENCE_NUMBER", sequence_number=encode(inc, 1, 1))

    async def test_position_refusals(self) -> None:
        async with self.opened() as log:
            desc = await self._three_batches(log)
            inc = desc.incarnation
            refused = [
                encode(inc, 1, 2),  # another shard
                encode(inc + 1, 0, 2),  # another incarnation
                encode(inc - 1, 0, 2),
                "not-a-number",
                "",
                "-1",
                "007",
                str(1 << 128),
            ]
            for kind in ["AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"]:
                for seq in refused:
                    with pytest.raises(InvalidArgumentError):
                        log.resolve("s", 0, kind, sequence_number=seq)
                with pytest.raises(InvalidArgumentError):
                    log.resolve("s", 0, kind)
            with pytest.raises(InvalidArgumentError):
                log.resolve("s", 0, "AT_TIMESTAMP")
            with pytest.raises(InvalidArgumentError):
                log.resolve("s", 0, "SOMEWHERE")
            with pytest.raises(InvalidArgumentError):
                log.read("s", 0, 1, max_records=0)
            with pytest.raises(ResourceNotFoundError):
                log.resolve("nope", 0, "AT_SEQUENCE_NUMBER", sequence_number=encode(inc, 0, 1))

    async def test_at_timestamp(self) -> None:
        async with self.opened() as log:
            t0 = self.clock.now
            await self._three_batches(log)  # arrivals t0, t0 + 10, t0 + 20

            def at(ms: int) -> int:
                return log.resolve("s", 0, "AT_TIMESTAMP", timestamp_ms=ms)

            assert at(t0 - 10 * HOUR_MS) == 1
            assert at(0) == 1
            assert at(t0) == 1
            assert at(t0 + 1) == 5
            assert at(t0 + 10) == 5
            assert at(t0 + 11) == 9
            assert at(t0 + 20) == 9
            assert at(t0 + 21) == 13  # after the newest: where the next record goes
            assert at(t0 + 1000 * HOUR_MS) == 13
            assert log.resolve("s", 1, "AT_TIMESTAMP", timestamp_ms=t0) == 1
            # Before the horizon: from the horizon.
            self.clock.now = t0 + 24 * HOUR_MS + 1
            await log.maintain()  # fewer keys than a chunk: one step trims them all
            assert log.tail("s", 0).horizon == 5
            assert at(t0) == 5
            assert at(t0 - HOUR_MS) == 5
            assert at(t0 + 11) == 9

    async def test_read_max_records(self) -> None:
        async with self.opened() as log:
            await self._three_batches(log)
            every = self._all_records()
            result = log.read("s", 0, 1, max_records=5)
            assert offsets(list(result.records())) == [1, 2, 3, 4, 5]
            assert result.count == 5
            assert result.next_offset == 6
            result = log.read("s", 0, 6, max_records=1)
            assert offsets(list(result.records())) == [6]
            assert result.next_offset == 7
            result = log.read("s", 0, 11, max_records=100)
            assert offsets(list(result.records())) == [11, 12]
            assert result.next_offset == 13
            rows = read_all(log, "s", 0, 2, max_records=3)
            assert offsets(rows) == list(range(2, 13))
            assert payloads(rows) == every[1:]

    async def test_read_max_bytes(self) -> None:
        async with self.opened() as log:
            await log.create_stream("s", 1)
            recs: list[tuple[str, bytes]] = []
            for n in range(3):
                batch = make_records(10, f"b{n}", size=200)
                recs += batch
                await log.append("s", {0: batch})
            whole = log.read("s", 0, 1)
            assert whole.count == 30
            small = log.read("s", 0, 1, max_bytes=1)
            assert 1 <= small.count < 30, "a read makes progress and respects max_bytes"
            assert offsets(list(small.records())) == list(range(1, small.count + 1))
            middle = log.read("s", 0, 15, max_bytes=1)
            assert 1 <= middle.count <= 16
            assert offsets(list(middle.records()))[0] == 15
            bounded = log.read("s", 0, 1, max_bytes=3000)
            assert 1 <= bounded.count < 30
            rows = read_all(log, "s", 0, 1, max_bytes=1)
            assert offsets(rows) == list(range(1, 31))
            assert payloads(rows) == recs

    async def test_read_inside_a_batch(self) -> None:
        async with self.opened() as log:
            await log.create_stream("s", 1)
            recs = make_records(10)
            await log.append("s", {0: recs})
            result = log.read("s", 0, 4, max_records=3)
            assert offsets(list(result.records())) == [4, 5, 6]
            assert payloads(list(result.records())) == recs[3:6]
            assert result.next_offset == 7
            assert payloads(list(log.read("s", 0, 10).records())) == recs[9:]
            beyond = log.read("s", 0, 11)
            assert beyond.count == 0
            assert beyond.next_offset == 11

    async def test_read_batches(self) -> None:
        async with self.opened() as log:
            await self._three_batches(log)
            every = self._all_records()
            batches, result = log.read_batches("s", 0, 1)
            assert [(b.first_offset, b.count) for b in batches] == [(1, 4), (5, 4), (9, 4)]
            assert result.next_offset == 13
            unpacked = [r for b in batches for r in b.records()]
            assert [(key, data) for _, key, data in unpacked] == every
            for b in batches:
                raw = msgpack.unpackb(bytes(b.payload), use_list=False)
                assert tuple(raw) == b.records()
                assert b.first_arrival_ms == b.records()[0][0]
                assert b.last_arrival_ms == b.records()[-1][0]
            # From inside a batch: the first batch starts exactly at the position.
            batches, result = log.read_batches("s", 0, 7)
            assert [(b.first_offset, b.count) for b in batches] == [(7, 2), (9, 4)]
            assert [(k, d) for b in batches for _, k, d in b.records()] == every[6:]
            assert result.next_offset == 13
            batches, result = log.read_batches("s", 0, 13)
            assert batches == []
            assert result.next_offset == 13
            # Bounded: at least one batch, and a position to continue from.
            batches, result = log.read_batches("s", 0, 1, max_records=1)
            assert batches and batches[0].first_offset == 1
            assert result.next_offset == batches[-1].first_offset + batches[-1].count

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

    # -- checkpoints and leases ----------------------------------------------------------

    async def test_checkpoints(self) -> None:
        async with self.opened() as log:
            desc = await log.create_stream("s", 2)
            inc = desc.incarnation
            await log.append("s", {0: make_records(5)})
            assert log.get_checkpoint("s", "app", 0) is None
            cp = await log.checkpoint("s", "app", 0, encode(inc, 0, 3))
            assert (cp.offset, cp.shard_end, cp.lease_counter) == (3, False, None)
            assert log.get_checkpoint("s", "app", 0) == cp
            cp = await log.checkpoint("s", "app", 0, encode(inc, 0, 0))
            assert log.get_checkpoint("s", "app", 0) == cp
            assert cp.offset == 0
            assert log.get_checkpoint("s", "other", 0) is None
            assert log.get_checkpoint("s", "app", 1) is None
            refused = [
                encode(inc, 0, 6),  # beyond the newest record
                encode(inc, 1, 1),  # another shard
                encode(inc + 1, 0, 1),  # another incarnation
                SHARD_END,  # the shard is open
                "bogus",
            ]
            for seq in refused:
                with pytest.raises(InvalidArgumentError):
                    await log.checkpoint("s", "app", 0, seq)
            with pytest.raises(InvalidArgumentError):
                await log.checkpoint("s", "bad app name", 0, encode(inc, 0, 1))
            with pytest.raises(ResourceNotFoundError):
                await log.checkpoint("s", "app", 5, encode(inc, 5, 0))
            with pytest.raises(ResourceNotFoundError):
                await log.checkpoint("nope", "app", 0, encode(inc, 0, 0))
            assert log.get_checkpoint("s", "app", 0) == cp
            cp = await log.checkpoint("s", "app", 0, encode(inc, 0, 5))
            assert log.get_checkpoint("s", "app", 0) == cp

    async def test_shard_end_checkpoint(self) -> None:
        async with self.opened() as log:
            desc = await log.create_stream("s", 1)
            await log.append("s", {0: make_records(2)})
            desc = await log.split_shard("s", 0, 1 << 127)
            cp = await log.checkpoint("s", "app", 0, SHARD_END)
            assert cp.shard_end and cp.offset is None
            assert log.get_checkpoint("s", "app", 0) == cp
            with pytest.raises(InvalidArgumentError):
                await log.checkpoint("s", "app", 1, SHARD_END)
            cp = await log.checkpoint("s", "app", 1, encode(desc.incarnation, 1, 0))
            assert not cp.shard_end

    async def test_lease_fencing(self) -> None:
        async with self.opened() as log:
            desc = await log.create_stream("s", 2)
            inc = desc.incarnation
            await log.append("s", {0: make_records(5)})
            assert log.get_lease("s", "app", 0) is None
            a = await log.acquire_lease("s", "app", 0, "worker-a", 1000)
            assert (a.owner, a.expires_ms) == ("worker-a", self.clock.now + 1000)
            assert log.get_lease("s", "app", 0) == a
            # Held by another: refused, until it expires.
            with pytest.raises(ResourceInUseError):
                await log.acquire_lease("s", "app", 0, "worker-b", 1000)
            # The holder asking again is no change of owner: same counter.
            again = await log.acquire_lease("s", "app", 0, "worker-a", 1000)
            assert again.counter == a.counter
            self.clock.advance(500)
            a = await log.renew_lease(a, 1000)
            assert a.counter == again.counter
            assert a.expires_ms == self.clock.now + 1000
            cp = await log.checkpoint("s", "app", 0, encode(inc, 0, 2), a.counter)
            assert cp.lease_counter == a.counter
            self.clock.now = a.expires_ms - 1
            with pytest.raises(ResourceInUseError):
                await log.acquire_lease("s", "app", 0, "worker-b", 1000)
            # Expired: another owner takes it, with a greater counter.
            self.clock.now = a.expires_ms
            b = await log.acquire_lease("s", "app", 0, "worker-b", 1000)
            assert b.owner == "worker-b"
            assert b.counter > a.counter
            assert log.get_lease("s", "app", 0) == b
            # The old holder is fenced off.
            with pytest.raises(LeaseLostError):
                await log.checkpoint("s", "app", 0, encode(inc, 0, 4), a.counter)
            with pytest.raises(LeaseLostError):
                await log.checkpoint("s", "app", 0, encode(inc, 0, 4))
            with pytest.raises(LeaseLostError):
                await log.renew_lease(a, 1000)
            with pytest.raises(LeaseLostError):
                await log.release_lease(a)
            assert log.get_checkpoint("s", "app", 0) == cp
            cp = await log.checkpoint("s", "app", 0, encode(inc, 0, 4), b.counter)
            assert cp.offset == 4
            with pytest.raises(ResourceInUseError):
                await log.acquire_lease("s", "app", 0, "worker-a", 1000)
            # Released: free for the next owner, whose counter grows again.
            released = await log.release_lease(b)
            assert released.owner != "worker-b"
            c = await log.acquire_lease("s", "app", 0, "worker-c", 1000)
            assert c.counter > b.counter
            with pytest.raises(LeaseLostError):
                await log.checkpoint("s", "app", 0, encode(inc, 0, 5), b.counter)
            with pytest.raises(LeaseLostError):
                await log.renew_lease(b, 1000)
            # An owner's old grant is fenced even when the same owner holds the lease
            # again: the counter decides, not the name.
            await log.release_lease(c)
            c_again = await log.acquire_lease("s", "app", 0, "worker-c", 1000)
            assert c_again.counter > c.counter
            with pytest.raises(LeaseLostError):
                await log.renew_lease(c, 1000)
            with pytest.raises(LeaseLostError):
                await log.checkpoint("s", "app", 0, encode(inc, 0, 5), c.counter)
            c = await log.renew_lease(c_again, 1000)
            # Leases are per application and per shard.
            other = await log.acquire_lease("s", "other-app", 0, "worker-a", 1000)
            assert other.owner == "worker-a"
            shard1 = await log.acquire_lease("s", "app", 1, "worker-a", 1000)
            assert shard1.owner == "worker-a"
            assert log.get_lease("s", "app", 0) == c
            with pytest.raises(InvalidArgumentError):
                await log.acquire_lease("s", "app", 0, "", 1000)
            with pytest.raises(ResourceNotFoundError):
                await log.acquire_lease("s", "app", 7, "worker-a", 1000)

    # -- reopening ------------------------------------------------------------------------

    async def test_reopen_keeps_everything(self) -> None:
        config = {"delete_chunk": 3}
        async with self.opened(**config) as log:
            await log.create_stream("a", 2)
            await log.create_stream("b", 3, retention_hours=48)
            await log.create_stream("gone", 1)
            t0 = self.clock.now
            await log.append("a", {0: make_records(4, "a0"), 1: make_records(2, "a1")})
            self.clock.advance(HOUR_MS)
            await log.append("a", {0: make_records(3, "a0b")})
            await log.append("b", {i: make_records(i + 2, f"b{i}") for i in range(3)})
            await log.append("gone", {0: make_records(9)})
            await log.split_shard("a", 1, (1 << 127) + 12345)
            await log.merge_shards("b", 0, 1)
            await log.increase_retention("b", 72)
            await log.delete_stream("gone")
            self.clock.now = t0 + 24 * HOUR_MS + 1
            await self.settle(log, lambda: log.tail("a", 0).horizon == 5)
            lease = await log.acquire_lease("a", "app", 0, "w1", 10 * HOUR_MS)
            await log.checkpoint("a", "app", 0, encode(lease.stream_incarnation, 0, 6), 1)
            await log.checkpoint("a", "app", 1, SHARD_END)
            before = self._snapshot(log)
        async with self.opened(**config) as log:
            after = self._snapshot(log)
            assert after.keys() == before.keys()
            for name, (desc, shards) in before.items():
                assert after[name][0] == desc
                for index, state in shards.items():
                    assert after[name][1][index] == state, (name, index)
            # Writes continue where they stopped; fencing continues too.
            result = await log.append("a", {0: make_records(1, "more")})
            assert result.ranges == {0: (8, 1)}
            self.clock.now = lease.expires_ms
            taken = await log.acquire_lease("a", "app", 0, "w2", 1000)
            assert taken.counter > lease.counter
            with pytest.raises(LeaseLostError):
                await log.checkpoint("a", "app", 0, encode(lease.stream_incarnation, 0, 7), 1)

    def _snapshot(self, log: Log) -> dict[str, Any]:
        streams: dict[str, Any] = {}
        for name in log.list_streams():
            desc = log.describe(name)
            shards = {}
            for shard in desc.shards:
                i = shard.index
                shards[i] = (
                    log.tail(name, i),
                    log.resolve(name, i, "TRIM_HORIZON"),
                    log.resolve(name, i, "LATEST"),
                    read_all(log, name, i),
                    log.get_checkpoint(name, "app", i),
                    log.get_lease(name, "app", i),
                )
            streams[name] = (desc, shards)
        return streams

    async def test_offsets_never_reused_after_trim_and_reopen(self) -> None:
        async with self.opened() as log:
            await log.create_stream("s", 1)
            await log.append("s", {0: make_records(3)})
            await log.append("s", {0: make_records(2)})
            self.clock.advance(24 * HOUR_MS + 1)
            await log.maintain()  # fewer keys than a chunk: one step trims them all
            assert log.tail("s", 0).horizon == 6
        async with self.opened() as log:
            tail = log.tail("s", 0)
            assert (tail.horizon, tail.next_offset) == (6, 6)
            assert log.resolve("s", 0, "TRIM_HORIZON") == 6
            result = await log.append("s", {0: make_records(1, "n")})
            assert result.ranges == {0: (6, 1)}
        async with self.opened() as log:
            assert offsets(read_all(log, "s", 0)) == [6]

    async def test_delete_and_create_again(self) -> None:
        async with self.opened(delete_chunk=3) as log:
            old = await log.create_stream("s", 2)
            for n in range(6):
                await log.append("s", {0: make_records(2, f"{n}"), 1: make_records(1, f"{n}")})
            lease = await log.acquire_lease("s", "app", 0, "w", 10_000)
            await log.checkpoint("s", "app", 0, encode(old.incarnation, 0, 4), lease.counter)
            await log.checkpoint("s", "app", 1, encode(old.incarnation, 1, 2))
            stored = self.stored_keys(log, old.incarnation)
            assert stored is None or stored > 3 * 3, "enough keys for several chunks"
            await log.delete_stream("s")
            new = await log.create_stream("s", 3)
            assert new.incarnation > old.incarnation
            assert new.shards != old.shards
            for i in range(3):
                tail = log.tail("s", i)
                assert (tail.horizon, tail.next_offset) == (1, 1)
                assert read_all(log, "s", i) == []
                assert log.get_checkpoint("s", "app", i) is None
                assert log.get_lease("s", "app", i) is None
            with pytest.raises(InvalidArgumentError):
                log.resolve(
                    "s", 0, "AT_SEQUENCE_NUMBER", sequence_number=encode(old.incarnation, 0, 1)
                )
            with pytest.raises(InvalidArgumentError):
                await log.checkpoint("s", "app", 0, encode(old.incarnation, 0, 1))
            with pytest.raises(ResourceNotFoundError):
                await log.append("s", {0: make_records(1)}, incarnation=old.incarnation)
            with pytest.raises(ResourceNotFoundError):
                await log.renew_lease(lease, 1000)
            # The new incarnation's lease starts from scratch: nobody holds it.
            fresh = await log.acquire_lease("s", "app", 0, "w2", 1000)
            assert fresh.stream_incarnation == new.incarnation
            result = await log.append("s", {0: make_records(1, "new")}, incarnation=new.incarnation)
            assert result.ranges == {0: (1, 1)}
            await self.settle(log, lambda: not self.stored_keys(log, old.incarnation))
            assert payloads(read_all(log, "s", 0)) == make_records(1, "new")

    async def test_deletion_resumes_after_reopen(self) -> None:
        async with self.opened(delete_chunk=2) as log:
            old = await log.create_stream("s", 4)
            for n in range(30):
                await log.append("s", {i: make_records(1, f"{n}") for i in range(4)})
            await log.create_stream("other", 1)
            # Closed at once: the deletion (60 chunks) is most likely cut short.
            await log.delete_stream("s")
        async with self.opened(delete_chunk=2) as log:
            assert log.list_streams() == ["other"]
            # Writes to other streams go on while the deletion proceeds in chunks.
            await log.append("other", {0: make_records(3)})
            await self.settle(log, lambda: not self.stored_keys(log, old.incarnation))
            assert payloads(read_all(log, "other", 0)) == make_records(3)
            new = await log.create_stream("s", 1)
            assert new.incarnation > old.incarnation
            assert read_all(log, "s", 0) == []

    async def test_second_open_is_refused(self) -> None:
        async with self.opened() as log:
            await log.create_stream("s", 1)
            with pytest.raises(DataDirectoryLockedError):
                async with self.opened():
                    pass
            await log.append("s", {0: make_records(1)})
        async with self.opened() as log:
            assert len(read_all(log, "s", 0)) == 1
