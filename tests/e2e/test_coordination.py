"""Leases and checkpoints through the real Client against a real server.

Two workers share a stream's shards for one application: they take leases,
checkpoint under their counters, one's lease expires (the broker's clock is
moved, nobody sleeps) and the other takes it over; the first is fenced off
with ``LeaseLostError`` and the second resumes after the first's checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.client import CheckpointInfo, Client, LeaseInfo, ListLeasesResult
from broker.errors import (
    InvalidArgumentError,
    LeaseLostError,
    ResourceNotFoundError,
    ShardlineError,
    ValidationError,
)

from .harness import ManualClock, read_all, serve

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/"
S0, S1, S2 = (f"shardId-00000000000{i}" for i in range(3))
APP = "billing"


async def test_two_workers_share_a_stream(tmp_path: Path) -> None:
    clock = ManualClock()
    async with (
        serve(tmp_path / "data", clock=clock) as served,
        Client(served.endpoint) as a,
        Client(served.endpoint) as b,
    ):
        await a.create_stream("s", 3)
        put = await a.put_records(
            "s",
            [{"Data": b"%d" % i, "PartitionKey": "k", "ExplicitHashKey": "0"} for i in range(6)],
        )
        seqs = [r.sequence_number for r in put.records]
        assert seqs[0] is not None

        lease_a = await a.acquire_lease("s", APP, S0, "worker-a", 10_000)
        assert isinstance(lease_a, LeaseInfo)
        assert lease_a == LeaseInfo(S0, APP, "worker-a", 1, clock.ms + 10_000, True)
        lease_b = await b.acquire_lease(None, APP, S1, "worker-b", 60_000, stream_arn=ARN + "s")
        assert (lease_b.shard_id, lease_b.owner, lease_b.lease_counter) == (S1, "worker-b", 1)
        with pytest.raises(ShardlineError, match="held by worker-a") as held:
            await b.acquire_lease("s", APP, S0, "worker-b", 10_000)
        # By wire name: the client maps ResourceInUseException to the first class of
        # that name in broker.errors (today DataDirectoryLockedError, not ResourceInUseError).
        assert held.value.wire_name == "ResourceInUseException"
        assert str(lease_a.expires_at) in held.value.message

        # Worker A processes three records and checkpoints the last one.
        records = await read_all(a, "s", S0)
        assert [r.data for r in records] == [b"%d" % i for i in range(6)]
        cp = await a.set_checkpoint("s", APP, S0, seqs[2], lease_counter=lease_a.lease_counter)
        assert isinstance(cp, CheckpointInfo)
        assert (cp.shard_id, cp.application_name, cp.sequence_number) == (S0, APP, seqs[2])
        assert (cp.lease_counter, cp.updated_at, cp.shard_end) == (1, clock.ms, False)
        assert await b.get_checkpoint("s", APP, S0) == cp

        clock.advance(5)  # seconds
        lease_a = await a.renew_lease("s", APP, S0, "worker-a", lease_a.lease_counter, 20_000)
        assert lease_a.expires_at == clock.ms + 20_000

        # A stops renewing; once its lease expires, B takes the shard over.
        clock.advance(1)
        listed = await b.list_leases("s", APP)
        assert [(x.shard_id, x.held) for x in listed.leases] == [(S0, True), (S1, True)]
        clock.advance(20)
        listed = await b.list_leases("s", APP)
        assert [(x.shard_id, x.held) for x in listed.leases] == [(S0, False), (S1, True)]
        taken = await b.acquire_lease("s", APP, S0, "worker-b", 10_000)
        assert (taken.owner, taken.lease_counter) == ("worker-b", 2)

        # A is fenced: its checkpoint, renewal and release are all refused.
        with pytest.raises(LeaseLostError) as caught:
            await a.set_checkpoint("s", APP, S0, seqs[4], lease_counter=lease_a.lease_counter)
        assert caught.value.wire_name == "LeaseLostException"
        assert caught.value.http_status == 400 and not caught.value.retriable
        assert "lease's counter is 2" in caught.value.message
        with pytest.raises(LeaseLostError, match="worker-b"):
            await a.renew_lease("s", APP, S0, "worker-a", lease_a.lease_counter, 1000)
        with pytest.raises(LeaseLostError):
            await a.release_lease("s", APP, S0, "worker-a", lease_a.lease_counter)

        # B resumes AFTER A's checkpoint, then finishes the shard.
        resume = await b.get_checkpoint("s", APP, S0)
        iterator = await b.get_shard_iterator(
            "s", S0, "AFTER_SEQUENCE_NUMBER", starting_sequence_number=resume.sequence_number
        )
        page = await b.get_records(iterator.shard_iterator)
        assert [r.sequence_number for r in page.records] == seqs[3:]
        done = await b.set_checkpoint("s", APP, S0, seqs[-1], lease_counter=taken.lease_counter)
        assert done.lease_counter == 2

        released = await b.release_lease("s", APP, S1, "worker-b", lease_b.lease_counter)
        assert (released.owner, released.held, released.lease_counter) == ("", False, 1)


async def test_shard_end_listing_and_errors(tmp_path: Path) -> None:
    clock = ManualClock()
    async with serve(tmp_path / "data", clock=clock) as served, Client(served.endpoint) as c:
        await c.create_stream("s", 1)
        await c.put_record("s", b"x", "k")
        lease = await c.acquire_lease("s", APP, S0, "w", 1000)
        await c.split_shard("s", S0, str(1 << 127))
        end = await c.set_checkpoint("s", APP, S0, "SHARD_END", lease_counter=lease.lease_counter)
        assert end.shard_end and end.sequence_number == "SHARD_END"
        with pytest.raises(InvalidArgumentError, match="SHARD_END"):
            await c.set_checkpoint("s", APP, S1, "SHARD_END")

        for shard in (S1, S2):
            await c.acquire_lease("s", APP, shard, "w", 1000)
        first = await c.list_leases("s", APP, max_results=2)
        assert isinstance(first, ListLeasesResult)
        assert [x.shard_id for x in first.leases] == [S0, S1]
        assert first.next_token is not None
        rest = await c.list_leases("s", APP, max_results=2, next_token=first.next_token)
        assert ([x.shard_id for x in rest.leases], rest.next_token) == ([S2], None)
        assert (await c.list_leases("s", "nobody")).leases == []

        with pytest.raises(ResourceNotFoundError, match="No checkpoint"):
            await c.get_checkpoint("s", APP, S1)
        with pytest.raises(InvalidArgumentError, match="application name"):
            await c.acquire_lease("s", "no spaces", S1, "w", 1000)
        with pytest.raises(ValidationError):
            await c.call("AcquireLease", {"StreamName": "s", "ShardId": S1, "Owner": "w"})
        await c.delete_stream("s")
        with pytest.raises(ResourceNotFoundError):
            await c.list_leases("s", APP)
