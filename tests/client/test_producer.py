"""``Producer``'s batching, retries and idempotence against an in-memory broker.

``FakeBroker`` stands in for the ``Client`` here only (the end-to-end tests
in ``tests/e2e/test_producer.py`` use a real server). It keeps per-shard logs,
checks idempotent batches the way the broker does (records routed to the
batch's ``ShardId``, numbers next or a retry of the last, answers a retry
from memory) and fails requests as a test scripts. Everything runs on trio's
``autojump_clock``, so linger and backoff are exact and take no real time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import ormsgpack
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.client import Backoff, Producer, ProducerClosedError
from broker.client.transport import ConnectionLostError, RawResponse
from broker.errors import InvalidArgumentError, ShardlineError
from broker.hashing import ShardRouter, even_ranges, hash_partition_key
from broker.model import MAX_HASH_KEY, HashKeyRange, Shard, shard_id

NO_WAIT = Backoff(initial_s=0.01, max_s=0.1, full_jitter=True)


@dataclass
class Request:
    """One PutRecords as the fake received it."""

    at: float
    shard: str | None
    number: int | None
    producer: str | None
    keys: list[str]
    datas: list[bytes]


@dataclass
class FakeBroker:
    """An in-memory broker speaking the producer's part of the wire (module docstring)."""

    shards: list[Shard]
    logs: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    #: Wire names to fail the next PutRecords with, one per request, before anything commits.
    refuse: list[str] = field(default_factory=list)
    #: Commit the next PutRecords, then lose the answer (ConnectionLostError).
    lose_answers: int = 0
    #: Refuse the records of each PutRecords from this index on (a throttled suffix).
    refuse_from: int | None = None
    producers: dict[str, dict[str, tuple[int, list[dict[str, str]]]]] = field(default_factory=dict)
    inits: int = 0
    #: Opened while a PutRecords is answered; a test closes it to hold the answers.
    gate: trio.Event | None = None
    #: Per shard: its PutRecords wait for the event (idempotent requests only).
    holds: dict[str, trio.Event] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for shard in self.shards:
            self.logs.setdefault(shard.shard_id, [])

    @classmethod
    def even(cls, count: int) -> FakeBroker:
        return cls([Shard(i, r, 0) for i, r in enumerate(even_ranges(count))])

    def split(self, index: int) -> None:
        """Close shard ``index`` and give its range to two new shards (as SplitShard)."""
        old = self.shards[index]
        middle = (old.hash_range.start + old.hash_range.end) // 2
        self.shards[index] = Shard(old.index, old.hash_range, 0, ending_offset=0)
        base = max(s.index for s in self.shards) + 1
        for i, hash_range in enumerate(
            (
                HashKeyRange(old.hash_range.start, middle),
                HashKeyRange(middle + 1, old.hash_range.end),
            )
        ):
            self.shards.append(Shard(base + i, hash_range, 0, parent=old.index))
            self.logs[shard_id(base + i)] = []

    def route(self, key: str, explicit: str | None) -> str:
        router = ShardRouter(self.shards)
        hash_key = int(explicit) if explicit is not None else hash_partition_key(key)
        return shard_id(router.shard_for_hash(hash_key))

    async def call(
        self, operation: str, request: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        if operation == "ListShards":
            return {
                "Shards": [
                    {
                        "ShardId": s.shard_id,
                        "HashKeyRange": {
                            "StartingHashKey": str(s.hash_range.start),
                            "EndingHashKey": str(s.hash_range.end),
                        },
                        "SequenceNumberRange": {"StartingSequenceNumber": "0"}
                        | ({} if s.is_open else {"EndingSequenceNumber": "1"}),
                    }
                    for s in self.shards
                ]
            }
        assert operation == "InitProducer"
        self.inits += 1
        producer = f"producer-{self.inits}"
        self.producers[producer] = {}
        return {"ProducerId": producer, "IdleExpirySeconds": 3600}

    async def exchange(
        self, operation: str, body: bytes, *, timeout: float | None = None
    ) -> RawResponse:
        assert operation == "PutRecords"
        request = msgpack.unpackb(body)
        if request.get("Compact"):
            # The columns as the map form's records, the client's hash keys as explicit ones.
            hashes = request["HashKeys"]
            request["Records"] = [
                {
                    "PartitionKey": key,
                    "Data": data,
                    "ExplicitHashKey": str(int.from_bytes(hashes[16 * i : 16 * i + 16], "big")),
                }
                for i, (key, data) in enumerate(
                    zip(request["PartitionKeys"], request["Data"], strict=True)
                )
            ]
        records = request["Records"]
        self.requests.append(
            Request(
                trio.current_time(),
                request.get("ShardId"),
                request.get("BatchNumber"),
                request.get("ProducerId"),
                [r["PartitionKey"] for r in records],
                [r["Data"] for r in records],
            )
        )
        await trio.lowlevel.checkpoint()
        if self.gate is not None:
            await self.gate.wait()
        hold = self.holds.get(request.get("ShardId"))
        if hold is not None:
            await hold.wait()
        if self.refuse:
            return _error(self.refuse.pop(0))
        answer = self._put(request)
        if self.lose_answers and not isinstance(answer, RawResponse):
            self.lose_answers -= 1
            raise ConnectionLostError("the test cut the connection after the commit")
        return (
            answer if isinstance(answer, RawResponse) else RawResponse(200, ormsgpack.packb(answer))
        )

    def _put(self, request: dict[str, Any]) -> dict[str, Any] | RawResponse:
        records = request["Records"]
        routes = [self.route(r["PartitionKey"], r.get("ExplicitHashKey")) for r in records]
        producer = request.get("ProducerId")
        if producer is None:
            entries: list[dict[str, str]] = []
            failed = 0
            for i, (record, target) in enumerate(zip(records, routes, strict=True)):
                if self.refuse_from is not None and i >= self.refuse_from:
                    failed += 1
                    entries.append(
                        {
                            "ErrorCode": "ProvisionedThroughputExceededException",
                            "ErrorMessage": "Rate exceeded",
                        }
                    )
                    continue
                entries.append(self._append(target, record))
            return {"FailedRecordCount": failed, "Records": entries}
        shard = request["ShardId"]
        known = self.producers.get(producer)
        if known is None:
            return _error("UnknownProducerIdException")
        if any(target != shard for target in routes):
            return _error("ShardMismatchException")
        last = known.get(shard)
        number = request["BatchNumber"]
        if last is not None and number == last[0]:
            return {"FailedRecordCount": 0, "Records": last[1], "Deduplicated": True}
        if number != (last[0] + 1 if last is not None else 0):
            return _error("OutOfOrderBatchException")
        entries = [self._append(shard, record) for record in records]
        known[shard] = (number, entries)
        return {"FailedRecordCount": 0, "Records": entries}

    def _append(self, shard: str, record: dict[str, Any]) -> dict[str, str]:
        log = self.logs[shard]
        log.append((record["PartitionKey"], record["Data"]))
        return {"ShardId": shard, "SequenceNumber": str(len(log))}


def _error(name: str) -> RawResponse:
    status = 500 if name.startswith("InternalFailure") else 400
    return RawResponse(status, msgpack.packb({"__type": name, "message": f"the test says {name}"}))


def run(test: Callable[[], Any]) -> None:
    """Run an async test body on an autojump clock (hypothesis drives sync functions)."""
    trio.run(test, clock=trio.testing.MockClock(autojump_threshold=0))


def record(i: int, size: int = 8) -> bytes:
    """Record ``i``'s data: its number first, so the log tells which record it is."""
    return i.to_bytes(4, "big") + b"\0" * max(0, size - 4)


def per_key(pairs: list[tuple[str, bytes]]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for key, data in pairs:
        out.setdefault(key, []).append(data)
    return out


def logged(fake: FakeBroker) -> dict[str, list[bytes]]:
    """Every key's records in log order, across all shards."""
    out: dict[str, list[bytes]] = {}
    for log in fake.logs.values():
        for key, data in log:
            out.setdefault(key, []).append(data)
    return out


# -- batching -------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shards=st.integers(1, 4),
    max_records=st.integers(1, 8),
    max_bytes=st.integers(16, 80),
    linger=st.sampled_from([0.0, 0.005, 0.05]),
    sends=st.lists(
        st.tuples(st.sampled_from("abcdefg"), st.integers(4, 40), st.sampled_from([0, 0, 0.003])),
        min_size=1,
        max_size=60,
    ),
)
def test_batches_hold_one_shard_within_bounds_and_leave_on_time(
    shards: int,
    max_records: int,
    max_bytes: int,
    linger: float,
    sends: list[tuple[str, int, float]],
) -> None:
    fake = FakeBroker.even(shards)
    sent_at: dict[bytes, float] = {}
    results: list[tuple[str, str]] = []

    async def main() -> None:
        async with Producer(
            "fake",
            "s",
            client=fake,
            linger=linger,
            max_batch_records=max_records,
            max_batch_bytes=max_bytes,
        ) as producer:
            handles = []
            for i, (key, size, pause) in enumerate(sends):
                data = record(i, size)
                sent_at[data] = trio.current_time()
                handles.append(await producer.send(data, key))
                if pause:
                    await trio.sleep(pause)
            # Everything leaves by linger alone; no flush before the checks.
            await trio.sleep(linger + 1)
            assert fake.requests and all(h.done() for h in handles)
            results.extend([await h for h in handles])

    run(main)
    expected = [(key, record(i, size)) for i, (key, size, _pause) in enumerate(sends)]
    # Each record exactly once, every key's records in send order.
    assert logged(fake) == per_key(expected)
    order = {data: i for i, (_key, data) in enumerate(expected)}
    for (shard, sequence), (key, data) in zip(results, expected, strict=True):
        assert fake.logs[shard][int(sequence) - 1] == (key, data)
    for request in fake.requests:
        sizes = [len(d) + len(k) for k, d in zip(request.keys, request.datas, strict=True)]
        # One shard per batch, and the batch's records are that shard's.
        assert request.shard is not None
        assert all(fake.route(k, None) == request.shard for k in request.keys)
        assert len(request.keys) <= max_records
        assert sum(sizes) <= max_bytes or len(sizes) == 1
        first = sent_at[request.datas[0]]
        # Nothing waits past its linger (autojump: the fake answers at once) ...
        assert request.at - first <= linger + 1e-9
        # ... and a batch that left early was full: its shard's next record did not fit.
        if request.at - first < linger - 1e-9:
            following = [
                data
                for key, data in expected
                if fake.route(key, None) == request.shard and order[data] > order[request.datas[-1]]
            ]
            assert len(request.keys) == max_records or (
                following and sum(sizes) + len(following[0]) + 1 > max_bytes
            )


def test_send_yields_once_per_full_batch_not_per_record() -> None:
    fake = FakeBroker.even(1)

    async def main() -> None:
        async with Producer("fake", "s", client=fake, max_batch_records=10) as producer:
            # Tasks run only when send yields: after 25 records, two batches left.
            for i in range(25):
                await producer.send(record(i), "k")
            assert len(fake.requests) <= 2
            await producer.flush()
            assert [len(r.keys) for r in fake.requests] == [10, 10, 5]

    run(main)


def test_flush_sends_at_once_and_waits_for_the_answers() -> None:
    fake = FakeBroker.even(2)

    async def main() -> None:
        async with Producer("fake", "s", client=fake, linger=10.0) as producer:
            handles = [await producer.send(record(i), f"k{i}") for i in range(20)]
            start = trio.current_time()
            await producer.flush()
            assert trio.current_time() - start < 1.0
            assert all(h.done() for h in handles)
            assert producer.statistics().records_sent == 20

    run(main)


def test_send_validates_like_the_broker_before_sending() -> None:
    fake = FakeBroker.even(1)

    async def main() -> None:
        async with Producer("fake", "s", client=fake) as producer:
            with pytest.raises(InvalidArgumentError, match="PartitionKey"):
                await producer.send(b"x", "")
            with pytest.raises(InvalidArgumentError, match="PartitionKey"):
                await producer.send(b"x", "k" * 257)
            with pytest.raises(InvalidArgumentError, match="more than the limit"):
                await producer.send(b"x" * (1 << 20), "key")
            with pytest.raises(InvalidArgumentError, match="ExplicitHashKey"):
                await producer.send(b"x", "k", str(MAX_HASH_KEY + 1))
            with pytest.raises(InvalidArgumentError, match="Data"):
                await producer.send("text", "k")  # type: ignore[arg-type]
            # The largest record that fits: 1 MiB of data plus key.
            handle = await producer.send(b"x" * ((1 << 20) - 3), "key")
            await producer.flush()
            assert handle.done()
        assert not fake.requests[1:]

    run(main)


def test_explicit_hash_keys_route_the_record() -> None:
    fake = FakeBroker.even(4)

    async def main() -> None:
        async with Producer("fake", "s", client=fake) as producer:
            handle = await producer.send(b"x", "any", str(MAX_HASH_KEY))
            shard, _ = await handle
            assert shard == shard_id(3)
            assert fake.requests[-1].shard == shard_id(3)

    run(main)


def test_send_outside_the_context_is_refused() -> None:
    fake = FakeBroker.even(1)

    async def main() -> None:
        producer = Producer("fake", "s", client=fake)
        with pytest.raises(ProducerClosedError):
            await producer.send(b"x", "k")
        async with producer:
            pass
        with pytest.raises(ProducerClosedError):
            await producer.send(b"x", "k")

    run(main)


# -- backpressure ------------------------------------------------------------------------


def test_send_waits_while_the_buffer_is_full() -> None:
    fake = FakeBroker.even(1)
    fake.gate = gate = trio.Event()
    size = 100_000

    async def main() -> None:
        async with Producer(
            "fake", "s", client=fake, max_buffered_bytes=1 << 20, linger=0
        ) as producer:
            for i in range(10):
                await producer.send(record(i, size), "k")
            with trio.move_on_after(30) as waited:
                await producer.send(record(10, size), "k")
            assert waited.cancelled_caught
            assert producer.statistics().records_pending == 10
            gate.set()
            with trio.fail_after(1):
                await producer.send(record(11, size), "k")

    run(main)


# -- retries -------------------------------------------------------------------------------


def test_throttled_batches_are_retried_with_the_same_number() -> None:
    fake = FakeBroker.even(1)
    fake.refuse = ["ProvisionedThroughputExceededException"] * 3

    async def main() -> None:
        async with Producer("fake", "s", client=fake, backoff=NO_WAIT) as producer:
            handles = [await producer.send(record(i), "k") for i in range(5)]
            await producer.flush()
            assert [await h for h in handles] == [(shard_id(0), str(n)) for n in range(1, 6)]
            stats = producer.statistics()
            assert (stats.records_retried, stats.requests, stats.batches) == (15, 4, 1)

    run(main)
    assert [r.number for r in fake.requests] == [0, 0, 0, 0]
    assert len({r.producer for r in fake.requests}) == 1


def test_backoff_grows_with_full_jitter() -> None:
    fake = FakeBroker.even(1)
    fake.refuse = ["InternalFailureException"] * 4
    backoff = Backoff(initial_s=1.0, max_s=8.0, full_jitter=True)

    async def main() -> None:
        async with Producer(
            "fake", "s", client=fake, backoff=backoff, rng=random.Random(3)
        ) as producer:
            await producer.send_and_wait(b"x", "k")

    run(main)
    waits = [b.at - a.at for a, b in zip(fake.requests, fake.requests[1:], strict=False)]
    expected_rng = random.Random(3)
    expected = [expected_rng.uniform(0, min(8.0, 2.0 ** (n - 1))) for n in range(1, 5)]
    assert waits == pytest.approx(expected)


def test_retries_run_out_and_fail_every_handle_with_the_last_error() -> None:
    fake = FakeBroker.even(1)
    fake.refuse = ["ProvisionedThroughputExceededException"] * 3

    async def main() -> None:
        async with Producer("fake", "s", client=fake, backoff=NO_WAIT, max_retries=2) as producer:
            handles = [await producer.send(record(i), "k") for i in range(3)]
            await producer.flush()
            for handle in handles:
                assert handle.done()
                with pytest.raises(ShardlineError) as caught:
                    await handle
                assert caught.value.wire_name == "ProvisionedThroughputExceededException"
            stats = producer.statistics()
            assert (stats.records_failed, stats.records_sent, stats.requests) == (3, 0, 3)
            # The failed batch's number may or may not be spent: the next batch takes a new id.
            await producer.send_and_wait(b"after", "k")

    run(main)
    assert [(r.producer, r.number) for r in fake.requests[3:]] == [("producer-2", 0)]


@pytest.mark.parametrize(
    "name", ["ResourceNotFoundException", "OutOfOrderBatchException", "InvalidArgumentException"]
)
def test_errors_that_cannot_be_retried_fail_at_once(name: str) -> None:
    fake = FakeBroker.even(1)
    fake.refuse = [name]

    async def main() -> None:
        async with Producer("fake", "s", client=fake, backoff=NO_WAIT) as producer:
            handle = await producer.send(b"x", "k")
            with pytest.raises(ShardlineError) as caught:
                await handle
            assert caught.value.wire_name == name
            assert producer.statistics().requests == 1

    run(main)


def test_a_lost_answer_is_retried_and_deduplicated() -> None:
    fake = FakeBroker.even(1)
    fake.lose_answers = 1

    async def main() -> None:
        async with Producer("fake", "s", client=fake, backoff=NO_WAIT) as producer:
            handles = [await producer.send(record(i), "k") for i in range(4)]
            results = [await h for h in handles]
            assert results == [(shard_id(0), str(n)) for n in range(1, 5)]
            stats = producer.statistics()
            assert stats.records_deduplicated == 4
            assert stats.records_possibly_duplicated == 0

    run(main)
    assert len(fake.logs[shard_id(0)]) == 4


def test_without_idempotence_a_lost_answer_duplicates_and_is_counted() -> None:
    fake = FakeBroker.even(1)
    fake.lose_answers = 1

    async def main() -> None:
        async with Producer(
            "fake", "s", client=fake, backoff=NO_WAIT, idempotent=False
        ) as producer:
            await producer.send_and_wait(b"x", "k")
            assert producer.statistics().records_possibly_duplicated == 1

    run(main)
    assert len(fake.logs[shard_id(0)]) == 2
    assert fake.inits == 0


def test_an_unknown_producer_id_takes_a_new_one_and_numbers_from_zero() -> None:
    fake = FakeBroker.even(1)

    async def main() -> None:
        async with Producer("fake", "s", client=fake, backoff=NO_WAIT) as producer:
            await producer.send_and_wait(b"one", "k")
            await producer.send_and_wait(b"two", "k")
            fake.producers.clear()  # the broker forgot it (expired)
            await producer.send_and_wait(b"three", "k")
            assert producer.producer_id == "producer-2"
            assert producer.statistics().records_possibly_duplicated == 0

    run(main)
    assert [(r.producer, r.number) for r in fake.requests] == [
        ("producer-1", 0),
        ("producer-1", 1),
        ("producer-1", 2),
        ("producer-2", 0),
    ]


def test_an_expired_id_after_a_lost_answer_counts_possible_duplicates() -> None:
    fake = FakeBroker.even(1)

    async def main() -> None:
        async with Producer("fake", "s", client=fake, backoff=NO_WAIT) as producer:
            fake.lose_answers = 1
            # The answer is lost; then the broker forgets the id before the retry.
            original = fake.exchange

            async def forget_then_answer(
                operation: str, body: bytes, *, timeout: float | None = None
            ) -> RawResponse:
                if fake.lose_answers == 0:
                    fake.producers.clear()
                    fake.exchange = original  # type: ignore[method-assign]
                return await original(operation, body, timeout=timeout)

            fake.exchange = forget_then_answer  # type: ignore[method-assign]
            await producer.send_and_wait(b"x", "k")
            assert producer.statistics().records_possibly_duplicated == 1

    run(main)
    assert len(fake.logs[shard_id(0)]) == 2


def test_a_partly_refused_batch_retries_only_the_refused_records_in_order() -> None:
    fake = FakeBroker.even(1)
    fake.refuse_from = 3

    async def main() -> None:
        async with Producer(
            "fake", "s", client=fake, backoff=NO_WAIT, idempotent=False, max_batch_records=5
        ) as producer:
            handles = [await producer.send(record(i), "k") for i in range(5)]
            await producer.flush()
            assert [await h for h in handles] == [(shard_id(0), str(n)) for n in range(1, 6)]
            stats = producer.statistics()
            assert (stats.records_sent, stats.records_retried, stats.records_pending) == (5, 2, 0)
            assert stats.batches == 2

    run(main)
    # The three admitted, then the two refused (refused again from index 3: not reached).
    assert [len(r.keys) for r in fake.requests] == [5, 2]
    assert [d for _k, d in fake.logs[shard_id(0)]] == [record(i) for i in range(5)]


# -- resharding ------------------------------------------------------------------------------


@pytest.mark.parametrize("idempotent", [True, False])
def test_after_a_split_records_go_to_the_children_in_order(idempotent: bool) -> None:
    fake = FakeBroker.even(1)
    keys = [f"key-{n}" for n in range(12)]

    async def main() -> None:
        async with Producer(
            "fake", "s", client=fake, backoff=NO_WAIT, idempotent=idempotent
        ) as producer:
            before = [await producer.send(record(i), keys[i % 12]) for i in range(24)]
            await producer.flush()
            fake.split(0)
            after = [await producer.send(record(i), keys[i % 12]) for i in range(24, 72)]
            await producer.flush()
            assert {(await h)[0] for h in before} == {shard_id(0)}
            assert {(await h)[0] for h in after} == {shard_id(1), shard_id(2)}
            assert producer.shard_ids == [shard_id(1), shard_id(2)]
            more = [await producer.send(record(i), keys[i % 12]) for i in range(72, 96)]
            await producer.flush()
            assert {(await h)[0] for h in more} == {shard_id(1), shard_id(2)}
            assert producer.statistics().records_sent == 96

    run(main)
    expected = [(keys[i % 12], record(i)) for i in range(96)]
    assert logged(fake) == per_key(expected)
    # The last batches went to the children directly (no refusal, no reroute).
    assert {r.shard for r in fake.requests[-2:]} <= {shard_id(1), shard_id(2), None}


def test_records_queued_behind_a_refused_batch_keep_their_order() -> None:
    fake = FakeBroker.even(1)
    fake.gate = trio.Event()

    async def main() -> None:
        async with Producer(
            "fake", "s", client=fake, backoff=NO_WAIT, max_batch_records=4, linger=0
        ) as producer:
            handles = [await producer.send(record(0), "a")]
            await trio.sleep(0.01)  # the first batch is in flight, held by the gate
            fake.split(0)  # ... and will be refused: its shard closed meanwhile
            handles += [await producer.send(record(i), "ab"[i % 2]) for i in range(1, 20)]
            assert fake.gate is not None
            fake.gate.set()
            await producer.flush()
            for handle in handles:
                assert (await handle)[0] in (shard_id(1), shard_id(2))

    run(main)
    assert logged(fake) == per_key(
        [("a", record(0))] + [("ab"[i % 2], record(i)) for i in range(1, 20)]
    )


def test_new_shards_wait_for_the_retired_shard_before_them() -> None:
    """A child sends nothing until its parent's in-flight batch is settled (and rerouted)."""
    fake = FakeBroker.even(2)
    router = ShardRouter(fake.shards)
    low = next(k for k in (f"k{n}" for n in range(100)) if router.shard_for_key(k) == 0)
    high = next(k for k in (f"k{n}" for n in range(100)) if router.shard_for_key(k) == 1)
    fake.holds[shard_id(0)] = held = trio.Event()

    async def main() -> None:
        async with Producer("fake", "s", client=fake, backoff=NO_WAIT, linger=0) as producer:
            first = await producer.send(record(0), low)  # in flight on shard 0, held
            await trio.sleep(0.01)
            fake.split(0)
            fake.split(1)
            # Shard 1's batch is refused at once: the producer installs the new map.
            await producer.send_and_wait(record(1), high)
            assert producer.shard_ids == [shard_id(n) for n in (2, 3, 4, 5)]
            later = [await producer.send(record(i), low) for i in range(2, 6)]
            await trio.sleep(0.01)
            assert not any(h.done() for h in later)
            held.set()
            await producer.flush()
            assert (await first)[0] in (shard_id(2), shard_id(3))

    run(main)
    assert logged(fake)[low] == [record(i) for i in (0, 2, 3, 4, 5)]


# -- statistics --------------------------------------------------------------------------------


def test_statistics_add_up() -> None:
    fake = FakeBroker.even(3)
    fake.refuse = ["ProvisionedThroughputExceededException", "ResourceNotFoundException"]

    async def main() -> None:
        async with Producer(
            "fake", "s", client=fake, backoff=NO_WAIT, max_batch_records=10
        ) as producer:
            sizes = []
            handles = []
            for i in range(95):
                key = f"k{i % 7}"
                handles.append(await producer.send(record(i, 10 + i % 5), key))
                sizes.append(10 + i % 5 + len(key))
            await producer.flush()
            failed = sent_bytes = 0
            for handle, size in zip(handles, sizes, strict=True):
                try:
                    await handle
                    sent_bytes += size
                except ShardlineError:
                    failed += 1
            stats = producer.statistics()
            assert stats.records_sent + stats.records_failed + stats.records_pending == 95
            assert stats.records_failed == failed > 0
            assert stats.records_pending == 0
            assert stats.requests == stats.batches + 2
            assert stats.mean_batch_records == pytest.approx(stats.records_sent / stats.batches)
            assert stats.bytes_sent == sent_bytes
            assert sum(len(log) for log in fake.logs.values()) == stats.records_sent
            assert stats.records_retried > 0
            assert stats.latency_p50_ms is not None and stats.latency_p99_ms is not None
            assert 0 <= stats.latency_p50_ms <= stats.latency_p90_ms <= stats.latency_p99_ms  # type: ignore[operator]

    run(main)


def test_closing_with_an_error_fails_what_is_pending() -> None:
    fake = FakeBroker.even(1)
    fake.gate = trio.Event()
    handles = []

    async def main() -> None:
        with pytest.raises(RuntimeError, match="boom"):
            async with Producer("fake", "s", client=fake) as producer:
                handles.append(await producer.send(b"x", "k"))
                raise RuntimeError("boom")
        with pytest.raises(ProducerClosedError):
            await handles[0]

    run(main)
