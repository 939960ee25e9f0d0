"""Conformance: positions and reads."""

from __future__ import annotations

import msgpack
import pytest

from broker.errors import (
    InvalidArgumentError,
    ResourceNotFoundError,
)
from broker.log import Log
from broker.model import (
    StreamDescription,
)
from broker.sequence import encode

from .base import (
    HOUR_MS,
    ConformanceBase,
    make_records,
    offsets,
    payloads,
    read_all,
)


class ReadTests(ConformanceBase):
    """Positions and reads."""

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

    async def test_read_batches_ends_at_a_batch_edge_rather_than_cutting(self) -> None:
        async with self.opened() as log:
            await self._three_batches(log)
            every = self._all_records()
            whole, _ = log.read_batches("s", 0, 1)
            largest = 3 * max(len(b.payload) for b in whole) + 256
            for max_bytes in range(1, largest, 7):
                position, got = 1, []
                while position < 13:
                    batches, result = log.read_batches("s", 0, position, max_bytes=max_bytes)
                    assert batches, "a read always moves"
                    # Only a read's first batch may be cut (it alone passes the bound).
                    assert all(
                        (b.first_offset, b.count) in {(1, 4), (5, 4), (9, 4)} for b in batches[1:]
                    )
                    got += [(k, d) for b in batches for _, k, d in b.records()]
                    position = result.next_offset
                assert got == every

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
