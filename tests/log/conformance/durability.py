"""Conformance: checkpoints, leases, reopening and deletion."""

from __future__ import annotations

from typing import Any

import pytest

from broker.errors import (
    DataDirectoryLockedError,
    InvalidArgumentError,
    LeaseLostError,
    ResourceInUseError,
    ResourceNotFoundError,
)
from broker.log import Log
from broker.model import (
    SHARD_END,
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


class LeaseAndReopenTests(ConformanceBase):
    """Checkpoints, leases, reopening and deletion."""

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

    async def test_lease_durations_must_be_positive(self) -> None:
        async with self.opened() as log:
            await log.create_stream("s", 1)
            for duration in (0, -5):
                with pytest.raises(InvalidArgumentError):
                    await log.acquire_lease("s", "app", 0, "w1", duration)
            assert log.get_lease("s", "app", 0) is None
            lease = await log.acquire_lease("s", "app", 0, "w1", 1_000)
            with pytest.raises(InvalidArgumentError):
                await log.renew_lease(lease, 0)
            assert log.get_lease("s", "app", 0) == lease

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
