"""Consumer groups against a real broker: worker processes, failover, lineage, fencing.

The broker runs in the test's trio loop (``harness.serve``); the workers are
either ``shardline consume`` processes (killed with real signals) or
``ConsumerGroup``s in the test process. Leases are short (1.5 s) and every wait
is for a condition, with a deadline.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio

from broker.client import Client
from broker.errors import ShardlineError
from consumers.group import Batch, BlockingConsumerGroup, ConsumerGroup

from .harness import Served

LEASE_S = 1.5
STREAM = "s"
GROUP = "g"


async def wait_for(condition: Callable[[], Awaitable[bool]], deadline_s: float, what: str) -> float:
    """Poll ``condition`` until it holds; the seconds it took, or fail after the deadline."""
    started = trio.current_time()
    with trio.move_on_after(deadline_s):
        while not await condition():
            await trio.sleep(0.05)
        return trio.current_time() - started
    raise AssertionError(f"not within {deadline_s} s: {what}")


async def put_per_shard(client: Client, per_shard: int, tag: str) -> dict[str, list[int]]:
    """``per_shard`` records into every open shard; the sequence numbers, by shard."""
    shards = [s for s in (await client.list_shards(STREAM)).shards if s.is_open]
    records = [
        {
            "Data": f"{tag}-{s.shard_id}-{i}".encode(),
            "PartitionKey": f"k{i}",
            "ExplicitHashKey": s.hash_key_range.starting_hash_key,
        }
        for s in shards
        for i in range(per_shard)
    ]
    put = await client.put_records(STREAM, records)
    assert put.failed_record_count == 0
    out: dict[str, list[int]] = {}
    for entry in put.records:
        assert entry.shard_id is not None and entry.sequence_number is not None
        out.setdefault(entry.shard_id, []).append(int(entry.sequence_number))
    return out


async def held_by(client: Client) -> Counter[str]:
    leases = (await client.list_leases(STREAM, GROUP)).leases
    return Counter(lease.owner for lease in leases if lease.held)


# -- worker processes ------------------------------------------------------------------


@dataclass
class Worker:
    name: str
    process: trio.Process
    printed: list[dict[str, Any]] = field(default_factory=list)
    stderr: bytearray = field(default_factory=bytearray)

    def sequences(self, shard_id: str | None = None) -> list[int]:
        return [
            int(r["SequenceNumber"])
            for r in self.printed
            if shard_id is None or r["ShardId"] == shard_id
        ]


async def _collect(worker: Worker) -> None:
    assert worker.process.stdout is not None and worker.process.stderr is not None
    async with trio.open_nursery() as nursery:

        async def errors() -> None:
            assert worker.process.stderr is not None
            async for chunk in worker.process.stderr:
                worker.stderr += chunk

        nursery.start_soon(errors)
        pending = b""
        async for chunk in worker.process.stdout:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            worker.printed += [json.loads(line) for line in lines]


@asynccontextmanager
async def workers(served: Served, names: list[str]) -> AsyncIterator[dict[str, Worker]]:
    """``shardline consume`` processes, their output collected; killed when the block ends."""
    running: dict[str, Worker] = {}
    async with trio.open_nursery() as nursery:
        try:
            for name in names:
                process = await trio.lowlevel.open_process(
                    [
                        sys.executable,
                        "-m",
                        "broker.cli",
                        "--endpoint",
                        served.endpoint,
                        "consume",
                        STREAM,
                        "--group",
                        GROUP,
                        "--worker",
                        name,
                        "--lease-duration",
                        str(LEASE_S),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                running[name] = Worker(name, process)
                nursery.start_soon(_collect, running[name])
            yield running
        finally:
            with trio.CancelScope(shield=True):
                for worker in running.values():
                    if worker.process.returncode is None:
                        worker.process.kill()
                    await worker.process.wait()


async def test_three_processes_split_twelve_shards_and_survive_a_kill(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream(STREAM, 12)
        expected = await put_per_shard(client, 10, "before")
        async with workers(served, ["w0", "w1", "w2"]) as running:

            async def even_split() -> bool:
                return sorted((await held_by(client)).items()) == [
                    ("w0", 4),
                    ("w1", 4),
                    ("w2", 4),
                ]

            await wait_for(even_split, 30, "12 shards held 4/4/4 by three workers")

            def printed() -> set[int]:
                return {seq for w in running.values() for seq in w.sequences()}

            async def all_printed() -> bool:
                return {s for seqs in expected.values() for s in seqs} <= printed()

            await wait_for(all_printed, 20, "every record printed")

            # Records keep coming while w0 is killed in the middle of its work.
            victim = running["w0"]
            leases = (await client.list_leases(STREAM, GROUP)).leases
            victim_shards = sorted(x.shard_id for x in leases if x.owner == "w0" and x.held)
            assert len(victim_shards) == 4
            more = await put_per_shard(client, 30, "during")
            victim_seen = len(victim.printed)

            async def victim_busy() -> bool:
                return len(victim.printed) > victim_seen

            await wait_for(victim_busy, 10, "w0 printing the new records")
            victim.process.send_signal(signal.SIGKILL)
            await victim.process.wait()
            # Nobody can take w0's shards before its leases expire: these are its last
            # checkpoints, and the survivors must print every record after them.
            last_checkpoints = {
                shard: int((await client.get_checkpoint(STREAM, GROUP, shard)).sequence_number)
                for shard in victim_shards
            }
            after_kill = await put_per_shard(client, 10, "after")

            async def taken_over() -> bool:
                return sorted((await held_by(client)).items()) == [("w1", 6), ("w2", 6)]

            failover_s = await wait_for(taken_over, LEASE_S + 10, "w1 and w2 holding 6 each")
            for shard, seqs in more.items():
                expected[shard] += seqs
            for shard, seqs in after_kill.items():
                expected[shard] += seqs
            await wait_for(all_printed, 20, "every record printed after the failover")

            survivors = [running["w1"], running["w2"]]
            after_the_kill = 0
            for shard in victim_shards:
                resumed = {seq for w in survivors for seq in w.sequences(shard)}
                owed = {seq for seq in expected[shard] if seq > last_checkpoints[shard]}
                assert owed <= resumed, f"{shard}: records after the checkpoint were skipped"
                after_the_kill += len(resumed & set(victim.sequences(shard)))
            every = [seq for w in running.values() for seq in w.sequences()]
            assert set(every) == {seq for seqs in expected.values() for seq in seqs}
            # Duplicates: records printed again by the worker that took their shard over,
            # after the kill or after a steal while the group balanced (the loser printed
            # a batch whose checkpoint was then refused).
            duplicates = len(every) - len(set(every))
            assert duplicates >= after_the_kill
            with capsys.disabled():
                print(
                    f"\n[group failover] {len(set(every))} records, {duplicates} printed twice "
                    f"({after_the_kill} after the SIGKILL, the rest while balancing); shards "
                    f"taken over {failover_s:.2f} s after the kill (lease {LEASE_S} s)"
                )

            # A clean stop releases at once: the survivor takes everything well before
            # the lease timeout would let it.
            running["w1"].process.send_signal(signal.SIGTERM)
            assert await running["w1"].process.wait() == 0
            assert b"Traceback" not in running["w1"].stderr
            listed = (await client.list_leases(STREAM, GROUP)).leases
            assert not [x for x in listed if x.owner == "w1"], "w1 did not release its leases"

            async def one_left() -> bool:
                return sorted((await held_by(client)).items()) == [("w2", 12)]

            await wait_for(one_left, 10, "w2 holding all 12 shards")


# -- groups in this process ------------------------------------------------------------


@dataclass
class Member:
    """A ``ConsumerGroup`` consuming in a task of its own, checkpointing every batch.

    The end of a shard in ``hold_end_of`` is logged and not checkpointed: the
    test does that when it sees fit.
    """

    name: str
    log: list[tuple[str, str, Batch]]
    options: dict[str, Any] = field(default_factory=dict)
    hold_end_of: set[str] = field(default_factory=set)
    group: ConsumerGroup | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)

    async def run(
        self, endpoint: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with ConsumerGroup(
                endpoint, STREAM, GROUP, worker_id=self.name, **self.options
            ) as group:
                self.group = group
                task_status.started()
                with self.scope:
                    async for batch in group:
                        self.log.append((self.name, "batch", batch))
                        if batch.ended and batch.shard_id in self.hold_end_of:
                            continue
                        if await batch.checkpoint():
                            self.log.append((self.name, "checkpointed", batch))
        finally:
            self.done.set()


def delivered(log: list[tuple[str, str, Batch]], shard: str | None = None) -> list[int]:
    return [
        int(record.sequence_number)
        for _, kind, batch in log
        if kind == "batch" and (shard is None or batch.shard_id == shard)
        for record in batch.records
    ]


async def test_a_parent_is_finished_before_its_children_are_taken(served: Served) -> None:
    log: list[tuple[str, str, Batch]] = []
    parent = "shardId-000000000000"
    async with Client(served.endpoint) as client, trio.open_nursery() as nursery:
        await client.create_stream(STREAM, 2)
        expected = await put_per_shard(client, 20, "parent")
        members = [
            Member(name, log, {"lease_duration": 1.0}, hold_end_of={parent}) for name in ("a", "b")
        ]
        for member in members:
            await nursery.start(member.run, served.endpoint)
        await client.split_shard(STREAM, parent, str(1 << 126))
        children = ["shardId-000000000002", "shardId-000000000003"]
        for shard, seqs in (await put_per_shard(client, 20, "after")).items():
            expected.setdefault(shard, []).extend(seqs)

        async def parent_ended() -> bool:
            return any(kind == "batch" and b.ended for _, kind, b in log)

        await wait_for(parent_ended, 10, "the parent's end delivered")
        # While the end is not checkpointed, the children stay untaken: several passes
        # of both workers go by, and the other shard's new records are delivered.
        passes = [m.group.statistics().passes for m in members if m.group]

        async def passes_went_by() -> bool:
            now = [m.group.statistics().passes for m in members if m.group]
            return all(n >= p + 2 for n, p in zip(now, passes, strict=True))

        async def other_shard_done() -> bool:
            return set(expected["shardId-000000000001"]) <= set(delivered(log))

        await wait_for(passes_went_by, 10, "two balancing passes of each worker")
        await wait_for(other_shard_done, 10, "shard 1 delivered")
        assert not [b for _, _, b in log if b.shard_id in children]
        leases = (await client.list_leases(STREAM, GROUP)).leases
        assert not [x for x in leases if x.shard_id in children]

        [end] = [b for _, kind, b in log if kind == "batch" and b.ended]
        assert end.shard_id == parent and end.records == [] and end.sequence_number == "SHARD_END"
        assert sorted(c["ShardId"] for c in end.child_shards) == children
        assert await end.checkpoint()
        log.append(("test", "checkpointed", end))

        async def everything() -> bool:
            return {s for seqs in expected.values() for s in seqs} <= set(delivered(log))

        await wait_for(everything, 15, "the children's records delivered")
        end_checkpointed = next(
            i for i, (_, kind, b) in enumerate(log) if kind == "checkpointed" and b.ended
        )
        first_child = next(i for i, (_, _, b) in enumerate(log) if b.shard_id in children)
        assert end_checkpointed < first_child
        assert (await client.get_checkpoint(STREAM, GROUP, parent)).shard_end
        for member in members:
            member.scope.cancel()


async def test_release_on_shutdown_hands_the_shards_over_at_once(served: Served) -> None:
    log: list[tuple[str, str, Batch]] = []
    async with Client(served.endpoint) as client, trio.open_nursery() as nursery:
        await client.create_stream(STREAM, 4)
        expected = await put_per_shard(client, 10, "first")
        # Leases far longer than the test: only a release can hand a shard over in time.
        options = {"lease_duration": 60.0, "balance_interval": 0.2}
        a, b = Member("a", log, options), Member("b", log, options)
        for member in (a, b):
            await nursery.start(member.run, served.endpoint)

        async def split_two_two() -> bool:
            return sorted((await held_by(client)).items()) == [("a", 2), ("b", 2)]

        await wait_for(split_two_two, 15, "2/2")

        async def first_delivered() -> bool:
            return {s for seqs in expected.values() for s in seqs} <= set(delivered(log))

        await wait_for(first_delivered, 10, "the first records delivered")
        a.scope.cancel()
        await a.done.wait()
        handover_s = await wait_for(
            lambda: _equals(held_by(client), {"b": 4}), 5, "b holding all 4 shards"
        )
        assert handover_s < 5
        more = await put_per_shard(client, 10, "second")
        for shard, seqs in more.items():
            expected[shard] += seqs
        await wait_for(first_delivered, 10, "every record delivered")
        # a checkpointed every batch before it left: b resumed after, nothing twice.
        got = delivered(log)
        assert len(got) == len(set(got)) == sum(len(s) for s in expected.values())
        b.scope.cancel()


async def _equals(value: Awaitable[Counter[str]], wanted: dict[str, int]) -> bool:
    return dict(await value) == wanted


async def test_a_checkpoint_with_a_stale_counter_stops_that_shard(served: Served) -> None:
    fenced, other = "shardId-000000000000", "shardId-000000000001"
    async with Client(served.endpoint) as client:
        await client.create_stream(STREAM, 2)
        await put_per_shard(client, 5, "first")
        # Renewals and passes far apart: the refused checkpoint is what finds out.
        async with ConsumerGroup(
            served.endpoint,
            STREAM,
            GROUP,
            worker_id="w",
            lease_duration=60.0,
            renew_interval=50.0,
            balance_interval=50.0,
        ) as group:
            batch = await group.__anext__()
            while batch.shard_id != fenced:
                assert await batch.checkpoint()
                batch = await group.__anext__()

            async def both_held() -> bool:
                return group.statistics().shards == (fenced, other)

            await wait_for(both_held, 5, "both shards held")
            # Another owner takes the lease over (as a steal does): the counter grows.
            lease = next(
                x for x in (await client.list_leases(STREAM, GROUP)).leases if x.shard_id == fenced
            )
            await client.release_lease(STREAM, GROUP, fenced, "w", lease.lease_counter)
            taken = await client.acquire_lease(STREAM, GROUP, fenced, "intruder", 60_000)
            assert taken.lease_counter == lease.lease_counter + 1

            assert await batch.checkpoint() is False
            assert group.statistics().shards == (other,)
            assert await group.checkpoint(fenced, batch.sequence_number) is False
            # Its subscription is gone from the broker (no takeover needed by the next reader).
            hub = served.broker.extras["fanout"]

            def subscribed(index: int) -> bool:
                return any(key[2] == index and not s.finished for key, s in hub.active.items())

            with trio.fail_after(5):
                while subscribed(0):
                    await hub.ended.wait()
            assert subscribed(1)
            # New records of the fenced shard are not delivered; the other shard's are.
            later = await put_per_shard(client, 5, "later")
            got: list[Batch] = []
            with trio.fail_after(10):
                while not set(later[other]) <= {
                    int(r.sequence_number) for b in got for r in b.records
                }:
                    got.append(await group.__anext__())
            assert all(b.shard_id == other for b in got)
            with pytest.raises(ShardlineError) as missing:  # the refused one was not written
                await client.get_checkpoint(STREAM, GROUP, fenced)
            assert missing.value.wire_name == "ResourceNotFoundException"


async def test_the_blocking_facade_from_a_plain_thread(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream(STREAM, 3)
        expected = await put_per_shard(client, 15, "sync")
        wanted = {seq for seqs in expected.values() for seq in seqs}

        def consume() -> tuple[list[int], str]:
            got: list[int] = []
            with BlockingConsumerGroup(
                served.endpoint, STREAM, GROUP, lease_duration=LEASE_S
            ) as group:
                for batch in group:
                    got += [int(r.sequence_number) for r in batch.records]
                    assert batch.checkpoint() is True
                    if wanted <= set(got):
                        break
                return got, group.worker_id

        with trio.fail_after(20):
            got, worker = await trio.to_thread.run_sync(consume)
        assert sorted(got) == sorted(wanted)
        for shard, seqs in expected.items():
            cp = await client.get_checkpoint(STREAM, GROUP, shard)
            assert int(cp.sequence_number) == seqs[-1]
        leases = (await client.list_leases(STREAM, GROUP)).leases
        assert len(leases) == 3 and not [x for x in leases if x.held]  # released on exit
        assert worker.count("-") >= 2  # host-pid-random
