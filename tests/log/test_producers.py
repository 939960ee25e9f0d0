"""Idempotent producers in the log: the batch and its row in one transaction, reopen, expiry.

Store-level tests drive ``LogStore.commit`` directly, so they choose exactly
which operations share a commit. The property test at the end sends random
sequences of new batches, retries, stale and skipped numbers, grouped into
random commits with reopens in between, and checks every answer against the
rule and every shard's records against the batches accepted: each exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.errors import (
    OutOfOrderBatchError,
    ShardMismatchError,
    UnknownProducerIdError,
)
from broker.log import LogConfig, ProducerStamp, reader
from broker.log import batch as fmt
from broker.log import keys as log_keys
from broker.log.catalog import split
from broker.log.env import LogEnvironment
from broker.log.producers import Producer, row_key
from broker.log.store import AppendOp, AppendResult, Commit, LogStore, Op
from broker.model import MAX_HASH_KEY

NOW = 1_700_000_000_000
EXPIRY_MS = 60_000


def open_store(path: Path, **config: Any) -> LogStore:
    return LogStore(LogEnvironment(path), LogConfig(**config))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    opened = open_store(tmp_path)
    try:
        yield opened
    finally:
        opened.close()


def run(store: LogStore, fn: Callable[[Commit], Any], now: int = NOW) -> Any:
    (op,) = [Op(fn)]
    store.commit([op], now)
    if op.error is not None:
        raise op.error
    return op.result


def setup(store: LogStore, shards: int = 1, expiry_ms: int = EXPIRY_MS) -> Producer:
    """Stream ``s`` with ``shards`` shards, and a new producer."""
    run(store, lambda c: c.create_stream("s", shards, NOW, 24))
    producer: Producer = run(store, lambda c: c.producers.create(NOW, expiry_ms))
    return producer


def records_of(number: int, count: int, index: int = 0) -> list[tuple[int, str, bytes]]:
    return [(NOW, f"k{i}", f"shard{index}-batch{number}-{i}".encode()) for i in range(count)]


def batch_op(
    store: LogStore,
    producer: Producer,
    number: int,
    count: int = 2,
    index: int = 0,
    now: int = NOW,
    expiry_ms: int = EXPIRY_MS,
) -> AppendOp:
    segment = fmt.pack_stamped(records_of(number, count, index), NOW)
    return AppendOp(
        "s",
        store.streams["s"].incarnation,
        {index: segment},
        segment.nbytes,
        producer=ProducerStamp(producer.producer_id, number, now, expiry_ms),
    )


def stored(store: LogStore, index: int = 0) -> list[bytes]:
    """Every record's data in shard ``index`` of ``s``, in log order."""
    out: list[bytes] = []
    offset = 0
    while True:
        result = reader.read(store, "s", index, offset)
        if result.count == 0:
            return out
        out += [data for _, _, _, data in result.records()]
        offset = result.next_offset


def raw(store: LogStore, key: bytes) -> Any:
    env = store.environment
    with env.reading() as txn:
        value = txn.get(key, db=env.dbs["producers"])
    return None if value is None else msgpack.unpackb(value)


def producer_keys(store: LogStore) -> list[bytes]:
    env = store.environment
    with env.reading() as txn:
        return [bytes(k) for k in txn.cursor(db=env.dbs["producers"]).iternext(values=False)]


class Boom(Exception):
    pass


def boom(c: Commit) -> None:
    raise Boom("a commit that fails after the batch was staged")


def test_row_and_batch_are_written_in_one_transaction(store: LogStore) -> None:
    producer = setup(store)
    inc = store.streams["s"].incarnation
    first = batch_op(store, producer, 0, count=3)
    store.commit([first], NOW)
    assert first.error is None and first.result == AppendResult(inc, {0: (1, 3)})
    assert raw(store, row_key((producer.producer_id, inc, 0))) == [0, 1, 3]
    assert raw(store, producer.producer_id) == [NOW, NOW + EXPIRY_MS]
    # The next batch is staged (records and row) and then the transaction fails: neither stays.
    second = batch_op(store, producer, 1, count=2)
    with pytest.raises(Boom):
        store.commit([second, Op(boom)], NOW)
    assert raw(store, row_key((producer.producer_id, inc, 0))) == [0, 1, 3]
    assert len(stored(store)) == 3
    with store.environment.reading() as txn:
        assert txn.get(log_keys.batch(inc, 0, 4), db=store.environment.dbs["batches"]) is None
    last = store.producers.batches[(producer.producer_id, inc, 0)]
    assert (last.batch_number, last.first_offset, last.count) == (0, 1, 3)
    # Batch 1 was never committed: it is the next one, not a retry.
    again = batch_op(store, producer, 1, count=2)
    store.commit([again], NOW)
    assert again.result == AppendResult(inc, {0: (4, 2)}) and len(stored(store)) == 5


def test_state_survives_reopen(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    producer = setup(store, shards=2)
    inc = store.streams["s"].incarnation
    store.commit([batch_op(store, producer, 7, count=2, index=1)], NOW)
    store.close()
    store = open_store(tmp_path)
    try:
        assert store.producers.producers[producer.producer_id] == producer
        retry = batch_op(store, producer, 7, count=2, index=1)
        store.commit([retry], NOW)
        assert retry.result == AppendResult(inc, {1: (1, 2)}, deduplicated=True)
        following = batch_op(store, producer, 8, count=1, index=1)
        store.commit([following], NOW)
        assert following.result == AppendResult(inc, {1: (3, 1)})
        assert len(stored(store, 1)) == 3
    finally:
        store.close()


def test_a_retry_in_the_same_commit_gets_the_original_offsets(store: LogStore) -> None:
    producer = setup(store)
    inc = store.streams["s"].incarnation
    ops = [
        batch_op(store, producer, 0, count=2),
        batch_op(store, producer, 0, count=2),
        batch_op(store, producer, 1, count=3),
        batch_op(store, producer, 1, count=3),
        batch_op(store, producer, 0, count=2),
    ]
    store.commit(ops, NOW)
    assert [op.result for op in ops[:4]] == [
        AppendResult(inc, {0: (1, 2)}),
        AppendResult(inc, {0: (1, 2)}, deduplicated=True),
        AppendResult(inc, {0: (3, 3)}),
        AppendResult(inc, {0: (3, 3)}, deduplicated=True),
    ]
    assert isinstance(ops[4].error, OutOfOrderBatchError)
    assert stored(store) == [data for _, _, data in records_of(0, 2) + records_of(1, 3)]


def test_a_retry_is_answered_after_its_shard_closed(store: LogStore) -> None:
    producer = setup(store)
    inc = store.streams["s"].incarnation
    store.commit([batch_op(store, producer, 0)], NOW)
    run(
        store,
        lambda c: c.replace_stream(
            "s",
            lambda d: split(d, 0, (MAX_HASH_KEY + 1) // 2, NOW, c.ending_offset(d), max_shards=8),
        ),
    )
    retry, following = batch_op(store, producer, 0), batch_op(store, producer, 1)
    store.commit([retry, following], NOW)
    assert retry.result == AppendResult(inc, {0: (1, 2)}, deduplicated=True)
    assert isinstance(following.error, ShardMismatchError)
    assert "closed" in following.error.message
    # The refused number was not used: the child takes any first number.
    child = batch_op(store, producer, 1, index=1)
    store.commit([child], NOW)
    assert child.result == AppendResult(inc, {1: (1, 2)})


def test_numbers_and_counts_are_checked(store: LogStore) -> None:
    producer = setup(store)
    ops = [
        batch_op(store, producer, 5),
        batch_op(store, producer, 7),
        batch_op(store, producer, 4),
        batch_op(store, producer, 5, count=3),
        batch_op(store, producer, 6),
    ]
    store.commit(ops, NOW)
    errors = [type(op.error) if op.error else None for op in ops]
    assert errors == [None, OutOfOrderBatchError, OutOfOrderBatchError, OutOfOrderBatchError, None]
    assert "expected 6" in str(ops[1].error) and "2 record(s)" in str(ops[3].error)
    assert len(stored(store)) == 4


def test_unknown_and_expired_producers_are_refused(store: LogStore) -> None:
    producer = setup(store, expiry_ms=1_000)
    stranger = Producer(b"\x01" * 16, NOW, NOW + 1_000)
    ops = [batch_op(store, stranger, 0), batch_op(store, producer, 0, now=NOW + 1_000)]
    store.commit(ops, NOW)
    assert all(isinstance(op.error, UnknownProducerIdError) for op in ops)
    assert "call InitProducer" in str(ops[0].error)
    assert stored(store) == []


def test_maintenance_deletes_expired_producers_in_chunks(tmp_path: Path) -> None:
    store = open_store(tmp_path, delete_chunk=2)
    try:
        producer = setup(store, shards=5, expiry_ms=1_000)
        keeper = run(store, lambda c: c.producers.create(NOW + 500, 1_000))
        for index in range(5):
            store.commit([batch_op(store, producer, 0, index=index, expiry_ms=1_000)], NOW)
        store.commit([batch_op(store, keeper, 0, now=NOW + 500, expiry_ms=1_000)], NOW)
        assert len(producer_keys(store)) == 8
        report = store.commit([], NOW + 999, maintain=True)
        assert len(producer_keys(store)) == 8 and not report.more_maintenance
        # Expired for the next batch at once, before any sweep.
        refused = batch_op(store, producer, 1, now=NOW + 1_000, expiry_ms=1_000)
        store.commit([refused], NOW + 1_000)
        assert isinstance(refused.error, UnknownProducerIdError)
        passes = 0
        while producer.producer_id in store.producers.producers or any(
            key[:16] == producer.producer_id for key in producer_keys(store)
        ):
            before = len(producer_keys(store))
            store.commit([], NOW + 1_000, maintain=True)
            assert before - len(producer_keys(store)) <= 2, "a sweep deletes at most its chunk"
            passes += 1
            assert passes < 20
        assert passes >= 3
        assert not any(key[0] == producer.producer_id for key in store.producers.batches)
        # The keeper was active later: it stays, with its row, also after a reopen.
        inc = store.streams["s"].incarnation
        assert sorted(producer_keys(store)) == sorted(
            [keeper.producer_id, row_key((keeper.producer_id, inc, 0))]
        )
    finally:
        store.close()
    store = open_store(tmp_path)
    try:
        assert list(store.producers.producers) == [keeper.producer_id]
    finally:
        store.close()


def test_a_deleted_streams_rows_are_swept_and_forgotten(store: LogStore) -> None:
    producer = setup(store)
    old = store.streams["s"].incarnation
    store.commit([batch_op(store, producer, 3)], NOW)
    run(store, lambda c: c.delete_stream("s"))
    assert (producer.producer_id, old, 0) not in store.producers.batches
    run(store, lambda c: c.create_stream("s", 1, NOW, 24))
    first = batch_op(store, producer, 3)
    store.commit([first], NOW)
    assert first.result is not None and not first.result.deduplicated, "a new incarnation"
    for _ in range(3):
        store.commit([], NOW, maintain=True)
    assert raw(store, row_key((producer.producer_id, old, 0))) is None
    new = store.streams["s"].incarnation
    assert raw(store, row_key((producer.producer_id, new, 0))) == [3, 1, 2]


# -- the property ---------------------------------------------------------------------

SHARDS = 2

#: ("new", shard, count) sends the shard's next batch; ("retry", shard, back) resends the
#: batch sent ``back`` batches before the last; ("skip", shard) sends a number past the
#: next; ("recount", shard) resends the last with one record more; ("commit",) ends a
#: commit; ("reopen",) closes and opens the log again.
actions = st.lists(
    st.one_of(
        st.tuples(st.just("new"), st.integers(0, SHARDS - 1), st.integers(1, 3)),
        st.tuples(st.just("retry"), st.integers(0, SHARDS - 1), st.integers(0, 2)),
        st.tuples(st.just("skip"), st.integers(0, SHARDS - 1)),
        st.tuples(st.just("recount"), st.integers(0, SHARDS - 1)),
        st.tuples(st.just("commit")),
        st.tuples(st.just("reopen")),
    ),
    max_size=40,
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=actions, starts=st.lists(st.integers(0, 1 << 40), min_size=2, max_size=2))
def test_each_batch_is_in_the_log_exactly_once(
    tmp_path_factory: pytest.TempPathFactory, actions: list[tuple[Any, ...]], starts: list[int]
) -> None:
    path = tmp_path_factory.mktemp("log")
    store = open_store(path)
    producer = setup(store, shards=SHARDS)
    inc = store.streams["s"].incarnation
    sent: list[list[tuple[int, int]]] = [[] for _ in range(SHARDS)]  # (number, count) per shard
    # The rule, applied in queue order: per shard the last (number, first offset, count).
    last: list[tuple[int, int, int] | None] = [None] * SHARDS
    ends = [1] * SHARDS
    expected_log: list[list[bytes]] = [[] for _ in range(SHARDS)]
    pending: list[tuple[AppendOp, Any]] = []

    def expect(index: int, number: int, count: int) -> Any:
        previous = last[index]
        if previous is not None and number == previous[0]:
            if count != previous[2]:
                return OutOfOrderBatchError
            return AppendResult(inc, {index: (previous[1], previous[2])}, deduplicated=True)
        if previous is not None and number != previous[0] + 1:
            return OutOfOrderBatchError
        last[index] = (number, ends[index], count)
        expected_log[index] += [data for _, _, data in records_of(number, count, index)]
        ends[index] += count
        return AppendResult(inc, {index: (ends[index] - count, count)})

    def send(index: int, number: int, count: int) -> None:
        pending.append(
            (batch_op(store, producer, number, count, index), expect(index, number, count))
        )

    def commit() -> None:
        store.commit([op for op, _ in pending], NOW)
        for op, wanted in pending:
            if isinstance(wanted, AppendResult):
                assert op.error is None and op.result == wanted
            else:
                assert isinstance(op.error, wanted)
        pending.clear()

    try:
        for action in actions:
            kind = action[0]
            if kind == "new":
                index, count = action[1], action[2]
                number = sent[index][-1][0] + 1 if sent[index] else starts[index]
                sent[index].append((number, count))
                send(index, number, count)
            elif kind in ("retry", "recount") and sent[action[1]]:
                index = action[1]
                back = action[2] if kind == "retry" else 0
                number, count = sent[index][max(0, len(sent[index]) - 1 - back)]
                send(index, number, count + (kind == "recount"))
            elif kind == "skip" and sent[action[1]]:
                send(action[1], sent[action[1]][-1][0] + 2, 1)
            elif kind == "commit":
                commit()
            elif kind == "reopen":
                commit()
                store.close()
                store = open_store(path)
        commit()
        for index in range(SHARDS):
            assert stored(store, index) == expected_log[index]
    finally:
        store.close()
