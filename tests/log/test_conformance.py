"""The conformance suite run against the LMDB log, and what only the LMDB log promises.

``stored_keys`` looks into the environment so that the suite checks deletion
down to the keys. The tests after the suite check the LMDB log's own
mechanisms: group commit and deletion in bounded chunks, the latter directly
on the synchronous ``LogStore`` so that every commit can be counted.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TypeVar

import trio

from broker.errors import ResourceNotFoundError
from broker.log import Log, LogConfig, leases, open_log
from broker.log import batch as fmt
from broker.log import keys as log_keys
from broker.log.env import LogEnvironment
from broker.log.store import AppendOp, Commit, LogStore, Op

from .conformance import FakeClock, LogConformance, make_records

T = TypeVar("T")


def stored_keys(store: LogStore, incarnation: int) -> int:
    """Keys under an incarnation's prefix in every database, plus its drop marker."""
    env = store.environment
    prefix = log_keys.incarnation(incarnation)
    count = 0
    with env.reading() as txn:
        for name in ("streams", "batches", "tails", "checkpoints", "leases", "consumers"):
            cursor = txn.cursor(db=env.dbs[name])
            found = cursor.set_range(prefix)
            while found and cursor.key().startswith(prefix):
                count += 1
                found = cursor.next()
        if txn.get(log_keys.drop(incarnation), db=env.dbs["meta"]) is not None:
            count += 1
    return count


class TestLmdbLog(LogConformance):
    def open_log(
        self, path: str, config: LogConfig, clock: Callable[[], int]
    ) -> AbstractAsyncContextManager[Log]:
        return open_log(path, config, clock=clock)

    def stored_keys(self, log: Log, incarnation: int) -> int:
        return stored_keys(log.store, incarnation)


async def test_group_commit_gathers_concurrent_appends(tmp_path: Path) -> None:
    appenders = 64
    async with open_log(tmp_path, LogConfig(maintenance_interval=1e9), clock=FakeClock()) as log:
        await log.create_stream("s", 1)
        before = log.statistics()["commits"]
        async with trio.open_nursery() as nursery:
            for task in range(appenders):
                nursery.start_soon(log.append, "s", {0: make_records(3, f"t{task}")})
        commits = log.statistics()["commits"] - before
        batches, _ = log.read_batches("s", 0, 1)
    assert 1 <= commits < appenders
    assert len(batches) == commits, "one stored batch per shard per commit"
    assert sum(b.count for b in batches) == 3 * appenders
    assert max(b.count for b in batches) > 3, "a batch holds the records of several appends"


def _run(store: LogStore, fn: Callable[[Commit], T]) -> T:
    """Apply one operation in a commit of its own, as the writer thread would."""
    op = Op(fn)
    store.commit([op], 0)
    if op.error is not None:
        raise op.error
    result: T = op.result
    return result


def test_a_dropped_stream_is_deleted_in_chunks_across_restarts(tmp_path: Path) -> None:
    config = LogConfig(delete_chunk=5)
    store = LogStore(LogEnvironment(tmp_path, config.env), config)
    try:
        desc = _run(store, lambda c: c.create_stream("s", 2, 0, 24))
        kept = _run(store, lambda c: c.create_stream("kept", 1, 0, 24))
        for n in range(12):
            segments = {i: fmt.pack_segment(make_records(2, f"{n}.{i}"), 0) for i in (0, 1)}
            op = AppendOp("s", None, segments, sum(s.nbytes for s in segments.values()))
            store.commit([op], 0)
            assert op.error is None
        _run(store, lambda c: c.delete_stream("s"))
    finally:
        store.close()
    inc = desc.incarnation
    store = LogStore(LogEnvironment(tmp_path, config.env), config)  # the drop survives
    try:
        assert inc in store.drops
        remaining = stored_keys(store, inc)
        assert remaining > 3 * config.delete_chunk
        steps = 0
        while remaining:
            report = store.commit([], 0, maintain=True)
            now = stored_keys(store, inc)
            assert remaining - now <= config.delete_chunk, "at most one chunk per commit"
            assert report.more_maintenance == bool(store.drops)
            remaining = now
            steps += 1
            assert steps < 100
        assert steps > 3
        assert store.drops == []
        assert stored_keys(store, kept.incarnation) > 0
    finally:
        store.close()


def test_a_checkpoint_queued_behind_a_recreate_is_refused(tmp_path: Path) -> None:
    """Delete, create again and a checkpoint resolved against the old stream, in one commit."""
    config = LogConfig()
    store = LogStore(LogEnvironment(tmp_path, config.env), config)
    try:
        old = _run(store, lambda c: c.create_stream("s", 1, 0, 24))
        segments = {0: fmt.pack_segment(make_records(3), 0)}
        store.commit([AppendOp("s", None, segments, 64)], 0)
        delete = Op(lambda c: c.delete_stream("s"))
        create = Op(lambda c: c.create_stream("s", 1, 0, 24))
        checkpoint = Op(lambda c: leases.checkpoint(c, "s", "app", 0, 0, None, 0, old.incarnation))
        store.commit([delete, create, checkpoint], 0)
        assert delete.error is None and create.error is None
        assert isinstance(checkpoint.error, ResourceNotFoundError)
        new = store.streams["s"]
        assert new.incarnation != old.incarnation
        with store.environment.reading() as txn:
            key = log_keys.application(new.incarnation, "app", 0)
            assert txn.get(key, db=store.environment.dbs["checkpoints"]) is None
    finally:
        store.close()
