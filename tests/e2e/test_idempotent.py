"""Idempotent PutRecords against a real server: retries never append twice.

Where a test needs a retry to arrive while its original waits for its commit,
it parks the log's writer thread inside a commit (an operation whose function
waits on a ``threading.Event``), so the interleaving is certain, not likely.
Conditions are awaited with deadlines, never with blind sleeps.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from broker.client import Client, PutRecordsResult
from broker.errors import (
    InvalidArgumentError,
    OutOfOrderBatchError,
    ShardMismatchError,
    UnknownProducerIdError,
)
from broker.hashing import hash_partition_key
from broker.log import Log, LogConfig
from broker.log.store import Commit
from broker.model import MAX_HASH_KEY
from broker.protocol.codec import encode_body

from .harness import ManualClock, Served, read_all, serve

SHARD0 = "shardId-000000000000"
LOWER, UPPER = "shardId-000000000001", "shardId-000000000002"
MIDDLE = (MAX_HASH_KEY + 1) // 2
DEADLINE_S = 10.0


def batch(tag: str, count: int, hash_key: int | None = None) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for i in range(count):
        record: dict[str, Any] = {"Data": f"{tag}-{i}".encode(), "PartitionKey": f"{tag}{i}"}
        if hash_key is not None:
            record["ExplicitHashKey"] = str(hash_key + i)
        records.append(record)
    return records


def keyed(tag: str, count: int, *, upper: bool) -> list[dict[str, Any]]:
    """Plain records (no ExplicitHashKey) whose keys' MD5 falls in one half of the hash space."""
    records: list[dict[str, Any]] = []
    for i in range(10 * count + 100):
        key = f"{tag}{i}"
        if (hash_partition_key(key) >= MIDDLE) == upper:
            records.append({"Data": f"{tag}-{len(records)}".encode(), "PartitionKey": key})
            if len(records) == count:
                return records
    raise AssertionError("not enough keys")


async def put(
    client: Client, pid: str, shard: str, number: int, records: list[dict[str, Any]]
) -> PutRecordsResult:
    return await client.put_records(
        "s", records, producer_id=pid, shard_id=shard, batch_number=number
    )


async def stored(client: Client, shard: str = SHARD0) -> list[bytes]:
    return [record.data for record in await read_all(client, "s", shard)]


def sequences(result: PutRecordsResult) -> list[str | None]:
    return [entry.sequence_number for entry in result.records]


async def wait_until(condition: Callable[[], bool]) -> None:
    with trio.fail_after(DEADLINE_S):
        while not condition():
            await trio.sleep(0.005)


class ParkedWriter:
    """Holds the log's writer thread inside a commit until ``release``."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.entered = threading.Event()
        self._go = threading.Event()

    def _park(self, commit: Commit) -> None:
        self.entered.set()
        self._go.wait(DEADLINE_S)

    async def park(self, nursery: trio.Nursery) -> None:
        """Queue the parking operation and wait until the writer thread is in it."""
        nursery.start_soon(self.log._apply, self._park)
        await trio.to_thread.run_sync(self.entered.wait, DEADLINE_S)
        assert self.entered.is_set()

    def release(self) -> None:
        self._go.set()


async def test_a_committed_batch_is_answered_again_and_not_appended(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 1)
        producer = await client.init_producer()
        assert len(producer.producer_id) == 32 and int(producer.producer_id, 16) >= 0
        assert producer.idle_expiry_seconds == 86_400
        records = batch("a", 100)
        first = await put(client, producer.producer_id, SHARD0, 0, records)
        again = await put(client, producer.producer_id, SHARD0, 0, records)
        assert first.failed_record_count == again.failed_record_count == 0
        assert (first.deduplicated, again.deduplicated) == (False, True)
        assert sequences(again) == sequences(first)
        assert {entry.shard_id for entry in again.records} == {SHARD0}
        assert await stored(client) == [r["Data"] for r in records]
        # The packed answer (numpy, from 64 records) is byte for byte its map packed.
        body = encode_body(
            {"StreamName": "s", "Records": records, "ProducerId": producer.producer_id}
            | {"ShardId": SHARD0, "BatchNumber": 0}
        )
        raw = await client.exchange("PutRecords", body)
        answer = msgpack.unpackb(raw.body)
        assert raw.status == 200 and answer["Deduplicated"] is True
        assert msgpack.packb(answer) == raw.body
        # A plain PutRecords is unchanged: no Deduplicated field, appended again.
        plain = await client.call("PutRecords", {"StreamName": "s", "Records": records[:2]})
        assert "Deduplicated" not in plain
        assert len(await stored(client)) == 102


async def test_a_retry_racing_its_original_in_one_commit(served: Served) -> None:
    log = served.broker.log
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 1)
        pid = (await client.init_producer()).producer_id
        records = batch("r", 5)
        results: list[PutRecordsResult] = []

        async def send() -> None:
            results.append(await put(client, pid, SHARD0, 0, records))

        parked = ParkedWriter(log)
        async with trio.open_nursery() as nursery:
            await parked.park(nursery)
            nursery.start_soon(send)
            nursery.start_soon(send)
            # Both copies queued behind the parked commit: they share the next one.
            await wait_until(lambda: log.statistics()["outstanding_ops"] == 3)
            parked.release()
        assert sorted(r.deduplicated for r in results) == [False, True]
        assert sequences(results[0]) == sequences(results[1])
        assert await stored(client) == [r["Data"] for r in records]


async def test_a_retry_waits_for_its_original_in_flight(served: Served) -> None:
    log = served.broker.log
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 1)
        pid = (await client.init_producer()).producer_id
        records = batch("w", 3)
        results: dict[str, PutRecordsResult] = {}

        async def send(name: str) -> None:
            results[name] = await put(client, pid, SHARD0, 0, records)

        first, second = ParkedWriter(log), ParkedWriter(log)
        async with trio.open_nursery() as nursery:
            await first.park(nursery)
            nursery.start_soon(send, "original")
            await wait_until(lambda: log.statistics()["outstanding_ops"] == 2)
            # The second parking op follows the original into the next commit, so the
            # writer stops inside it with the original applied but not yet committed.
            nursery.start_soon(log._apply, second._park)
            await wait_until(lambda: log.statistics()["outstanding_ops"] == 3)
            first.release()
            await trio.to_thread.run_sync(second.entered.wait, DEADLINE_S)
            assert "original" not in results
            nursery.start_soon(send, "retry")
            await wait_until(lambda: log.statistics()["outstanding_ops"] == 3)
            second.release()
        assert (results["original"].deduplicated, results["retry"].deduplicated) == (False, True)
        assert sequences(results["retry"]) == sequences(results["original"])
        assert await stored(client) == [r["Data"] for r in records]


async def test_gaps_old_numbers_and_other_counts_are_refused(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 1)
        pid = (await client.init_producer()).producer_id
        await put(client, pid, SHARD0, 5, batch("five", 2))  # any first number is accepted
        with pytest.raises(OutOfOrderBatchError, match="expected 6"):
            await put(client, pid, SHARD0, 7, batch("seven", 2))
        with pytest.raises(OutOfOrderBatchError, match="expected 6"):
            await put(client, pid, SHARD0, 4, batch("four", 2))
        with pytest.raises(OutOfOrderBatchError, match="2 record"):
            await put(client, pid, SHARD0, 5, batch("five", 3))
        assert not OutOfOrderBatchError.retriable
        six = await put(client, pid, SHARD0, 6, batch("six", 1))
        assert not six.deduplicated
        assert await stored(client) == [b"five-0", b"five-1", b"six-0"]


async def test_shard_mismatch_after_a_split_and_the_parents_retry(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 1)
        pid = (await client.init_producer()).producer_id
        before = await put(client, pid, SHARD0, 0, batch("p", 4))
        await client.split_shard("s", SHARD0, str(MIDDLE))
        retried = await put(client, pid, SHARD0, 0, batch("p", 4))
        assert retried.deduplicated and sequences(retried) == sequences(before)
        with pytest.raises(ShardMismatchError, match=f"{SHARD0} of stream s is closed") as closed:
            await put(client, pid, SHARD0, 1, batch("p1", 2))
        assert closed.value.retriable
        # Records that route to the upper child, sent as the lower one's batch.
        with pytest.raises(ShardMismatchError, match=f"route to {UPPER}"):
            await put(client, pid, LOWER, 0, batch("up", 2, hash_key=MIDDLE + 10))
        with pytest.raises(ShardMismatchError, match=f"route to {UPPER};"):
            await put(client, pid, LOWER, 0, keyed("key", 70, upper=True))
        with pytest.raises(ShardMismatchError, match=f"route to {LOWER}, {UPPER};"):
            await put(
                client, pid, UPPER, 0, keyed("key", 3, upper=True) + keyed("k", 1, upper=False)
            )
        with pytest.raises(ShardMismatchError, match=f"route to {LOWER}, {UPPER}"):
            await put(client, pid, LOWER, 0, batch("lo", 1, 5) + batch("up", 1, MIDDLE))
        # The refused number was not used; routed right, the batches go in.
        lower = await put(client, pid, LOWER, 0, batch("lo", 2, hash_key=5))
        upper = await put(client, pid, UPPER, 0, batch("up", 2, hash_key=MIDDLE + 10))
        assert {e.shard_id for e in lower.records} == {LOWER}
        assert {e.shard_id for e in upper.records} == {UPPER}
        assert await stored(client, SHARD0) == [f"p-{i}".encode() for i in range(4)]
        assert await stored(client, LOWER) == [b"lo-0", b"lo-1"]
        assert await stored(client, UPPER) == [b"up-0", b"up-1"]


async def test_a_restarted_server_keeps_the_dedup_state(tmp_path: Path) -> None:
    data = tmp_path / "data"
    records = batch("k", 3)
    async with serve(data) as served, Client(served.endpoint) as client:
        await client.create_stream("s", 1)
        pid = (await client.init_producer()).producer_id
        first = await put(client, pid, SHARD0, 0, records)
    async with serve(data) as served, Client(served.endpoint) as client:
        again = await put(client, pid, SHARD0, 0, records)
        assert again.deduplicated and sequences(again) == sequences(first)
        with pytest.raises(OutOfOrderBatchError, match="expected 1"):
            await put(client, pid, SHARD0, 2, records)
        assert not (await put(client, pid, SHARD0, 1, batch("k1", 1))).deduplicated
        assert await stored(client) == [b"k-0", b"k-1", b"k-2", b"k1-0"]


async def test_unknown_ids_and_incomplete_batches_are_refused(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 1)
        with pytest.raises(UnknownProducerIdError, match="InitProducer") as unknown:
            await put(client, secrets.token_hex(16), SHARD0, 0, batch("u", 1))
        assert not unknown.value.retriable
        with pytest.raises(InvalidArgumentError, match="ProducerId"):
            await put(client, "ABC" * 11 + "D", SHARD0, 0, batch("u", 1))
        pid = (await client.init_producer()).producer_id
        with pytest.raises(InvalidArgumentError, match=r"^BatchNumber missing"):
            await client.put_records("s", batch("u", 1), producer_id=pid, shard_id=SHARD0)
        with pytest.raises(InvalidArgumentError, match=r"^ShardId and BatchNumber missing"):
            await client.put_records("s", batch("u", 1), producer_id=pid)
        with pytest.raises(InvalidArgumentError, match="BatchNumber -1 is out of range"):
            await put(client, pid, SHARD0, -1, batch("u", 1))
        assert await stored(client) == []


async def test_idle_producers_expire_and_maintenance_deletes_them(tmp_path: Path) -> None:
    clock = ManualClock()
    log = LogConfig(maintenance_interval=0.02)
    async with (
        serve(tmp_path / "data", clock=clock, producer_idle_expiry_s=1, log=log) as served,
        Client(served.endpoint) as client,
    ):
        await client.create_stream("s", 1)
        producer = await client.init_producer()
        assert producer.idle_expiry_seconds == 1
        pid = producer.producer_id
        await put(client, pid, SHARD0, 0, batch("e", 1))
        clock.advance(0.9)  # a batch renews the expiry: not idle for long yet
        await put(client, pid, SHARD0, 1, batch("e1", 1))
        clock.advance(0.9)
        assert (await put(client, pid, SHARD0, 1, batch("e1", 1))).deduplicated
        clock.advance(1.0)
        # Refused as soon as it expired; the sweep deletes it and its row soon after.
        with pytest.raises(UnknownProducerIdError):
            await put(client, pid, SHARD0, 2, batch("e2", 1))
        table = served.broker.log.store.producers
        await wait_until(lambda: bytes.fromhex(pid) not in table.producers)
        assert not any(key[0] == bytes.fromhex(pid) for key in table.batches)
        fresh = (await client.init_producer()).producer_id
        assert not (await put(client, fresh, SHARD0, 0, batch("f", 1))).deduplicated
        assert await stored(client) == [b"e-0", b"e1-0", b"f-0"]


async def test_write_limits_admit_or_refuse_a_batch_whole(tmp_path: Path) -> None:
    clock = ManualClock()
    async with (
        serve(tmp_path / "data", clock=clock, shard_write_records_per_s=10) as served,
        Client(served.endpoint) as client,
    ):
        await client.create_stream("s", 1)
        pid = (await client.init_producer()).producer_id
        await put(client, pid, SHARD0, 0, batch("a", 8))
        refused = await put(client, pid, SHARD0, 1, batch("b", 8))
        assert refused.failed_record_count == 8
        codes = {entry.error_code for entry in refused.records}
        assert codes == {"ProvisionedThroughputExceededException"}
        assert len(await stored(client)) == 8
        clock.advance(1.0)
        # The refused number was not used up: the same batch goes in once the bucket refilled.
        admitted = await put(client, pid, SHARD0, 1, batch("b", 8))
        assert admitted.failed_record_count == 0 and not admitted.deduplicated
        assert len(await stored(client)) == 16


async def test_a_stream_created_again_starts_without_the_old_numbers(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 1)
        pid = (await client.init_producer()).producer_id
        await put(client, pid, SHARD0, 4, batch("old", 1))
        await client.delete_stream("s")
        await client.create_stream("s", 1)
        again = await put(client, pid, SHARD0, 4, batch("new", 1))
        assert not again.deduplicated
        assert await stored(client) == [b"new-0"]
