"""The log as trio code sees it: ``open_log`` and the group-commit writer.

Every write (append, create, reshard, lease, checkpoint, maintenance) is queued
as an operation; one writer task hands everything queued so far to the writer
thread, which applies it in one LMDB transaction with one durable commit
(``LogStore.commit``). Operations queued while a commit is in flight wait for
the next one: the more callers, the more records per fsync. Nobody learns the
result of an operation before its commit is durable.

The queue is bounded by ``LogConfig.max_pending_bytes``: an appender waits
while the queue holds that much (so it holds at most that plus one append).
Arrival times are stamped when an append joins the queue, from a clock that
never goes back, so they never decrease within a shard.

Reads are synchronous methods: short read transactions, no ``await`` inside.

An append that was queued is committed even if its caller is cancelled while
waiting for the result: cancellation does not withdraw a write.

Idempotent producers (``broker.log.producers``): ``init_producer`` creates
one, ``append_stamped(..., producer=stamp)`` appends one of its batches
exactly once, and ``producer`` / ``last_batch`` read the published table
without a transaction.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from ..errors import InvalidArgumentError, ResourceNotFoundError
from ..model import (
    SHARD_END,
    Checkpoint,
    Consumer,
    Lease,
    PositionType,
    ShardTail,
    StreamDescription,
    StreamMode,
)
from ..sequence import decode as decode_sequence
from . import batch as fmt
from . import catalog, consumers, keys, leases, reader
from .committer import GroupCommitter
from .env import LogEnvironment
from .producers import LastBatch, Producer, ProducerStamp
from .store import AppendOp, AppendResult, Commit, CommitReport, LogConfig, LogStore, Op

T = TypeVar("T")
Clock = Callable[[], int]
CommitListener = Callable[[CommitReport], None]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Log:
    """The durable sharded log: async writes through the group commit, synchronous reads."""

    def __init__(self, store: LogStore, clock: Clock) -> None:
        self.store = store
        self.config = store.config
        self._clock = clock
        self._last_ms = max((t.last_arrival_ms for t in store.tails.values()), default=0)
        self._space = trio.lowlevel.ParkingLot()
        self._idle = trio.Event()
        self._idle.set()
        self._outstanding = 0
        self._listeners: list[CommitListener] = []
        self._commits = 0
        self._committed_ops = 0
        self._committer = GroupCommitter(
            store,
            clock,
            trio.lowlevel.current_trio_token(),
            self._committed,
            store.config.maintenance_interval,
        )

    # -- the group commit ---------------------------------------------------

    def _committed(self, ops: list[AppendOp | Op], report: CommitReport) -> None:
        """On the trio thread, after a durable commit: wake its waiters and listeners."""
        self._commits += 1
        self._committed_ops += len(ops)
        for op in ops:
            op.done.set()
        self._outstanding -= len(ops)
        if self._outstanding == 0:
            self._idle.set()
        self._space.unpark_all()
        for listener in self._listeners:
            listener(report)

    async def _submit(self, op: AppendOp | Op) -> Any:
        """Queue an operation (no ``await`` before it is queued) and wait for its commit."""
        op.done = done = trio.Event()
        if self._outstanding == 0:
            self._idle = trio.Event()
        self._outstanding += 1
        self._committer.submit(op)
        await done.wait()
        if op.error is not None:
            raise op.error
        return op.result

    async def _apply(self, fn: Callable[[Commit], T]) -> T:
        result: T = await self._submit(Op(fn))
        return result

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener`` on the trio thread after every commit, with what it stored."""
        self._listeners.append(listener)

    async def wait_idle(self) -> None:
        """Wait until every queued operation has been committed."""
        await self._idle.wait()

    async def _close(self) -> None:
        with trio.CancelScope(shield=True):
            await self.wait_idle()
            self._committer.stop()
            await trio.to_thread.run_sync(self._committer.join)

    def statistics(self) -> dict[str, int]:
        return {
            "commits": self._commits,
            "committed_ops": self._committed_ops,
            "outstanding_ops": self._outstanding,
            "queued_bytes": self._committer.queued_bytes,
            "map_size": self.store.environment.map_size,
        }

    def now_ms(self) -> int:
        """The log's clock, clamped so that it never goes back."""
        now = self._clock()
        if now < self._last_ms:
            now = self._last_ms
        self._last_ms = now
        return now

    # -- appends ------------------------------------------------------------

    async def append(
        self,
        stream: str,
        records: Mapping[int, Sequence[tuple[str, bytes]]],
        *,
        incarnation: int | None = None,
    ) -> AppendResult:
        """Append records, already routed to shard indexes, durably; all commit or none.

        ``records`` maps a shard index to ``(partition_key, data)`` pairs (keys
        valid partition keys, data bytes: the operations layer checks both).
        Pass the ``incarnation`` the records were routed with, so that a stream
        deleted and created again meanwhile is refused rather than written.
        """
        while self._committer.queued_bytes >= self.config.max_pending_bytes:
            await self._space.park()
        now = self.now_ms()
        segments = {index: fmt.pack_segment(recs, now) for index, recs in records.items() if recs}
        return await self._append_segments(stream, segments, incarnation)

    async def _append_segments(
        self,
        stream: str,
        segments: dict[int, fmt.Segment],
        incarnation: int | None,
        producer: ProducerStamp | None = None,
    ) -> AppendResult:
        if not segments:
            raise InvalidArgumentError("an append needs at least one record")
        if producer is not None and len(segments) != 1:
            raise InvalidArgumentError("an idempotent batch goes to exactly one shard")
        nbytes = sum(s.nbytes for s in segments.values())
        op = AppendOp(stream, incarnation, segments, nbytes, producer=producer)
        result: AppendResult = await self._submit(op)
        return result

    async def append_stamped(
        self,
        stream: str,
        records: Mapping[int, Sequence[fmt.RecordTuple]],
        arrival_ms: int,
        *,
        incarnation: int | None = None,
        producer: ProducerStamp | None = None,
    ) -> AppendResult:
        """``append`` for records built as ``(arrival_ms, key, data)`` by the caller.

        ``arrival_ms`` must come from ``now_ms()`` with no ``await`` since, so
        that stamps follow queue order; if the queue is full the records wait
        for room and are stamped again (arrival times never decrease within a
        shard). This spares the write path a tuple per record.

        With ``producer`` the records are one idempotent batch for one shard:
        appended only if the producer is known and the number is its next one
        for that shard; a repeat of its last batch is answered with that
        batch's offsets and ``deduplicated`` (nothing appended). Refusals:
        ``UnknownProducerIdError``, ``OutOfOrderBatchError``,
        ``ShardMismatchError`` (the shard is closed or does not exist).
        """
        if self._committer.queued_bytes >= self.config.max_pending_bytes:
            while self._committer.queued_bytes >= self.config.max_pending_bytes:
                await self._space.park()
            arrival_ms = self.now_ms()
            records = {i: [(arrival_ms, k, d) for _, k, d in recs] for i, recs in records.items()}
        segments = {
            index: fmt.pack_stamped(recs, arrival_ms) for index, recs in records.items() if recs
        }
        return await self._append_segments(stream, segments, incarnation, producer)

    # -- idempotent producers ------------------------------------------------

    async def init_producer(self, idle_expiry_ms: int) -> Producer:
        """A new producer, durably stored, expiring ``idle_expiry_ms`` after its last batch."""
        if idle_expiry_ms <= 0:
            raise InvalidArgumentError(f"idle expiry must be positive, got {idle_expiry_ms} ms")
        now = self.now_ms()
        return await self._apply(lambda c: c.producers.create(now, idle_expiry_ms))

    def producer(self, producer_id: bytes) -> Producer | None:
        """A producer as last committed (expired ones too, until maintenance deletes them)."""
        return self.store.producers.producers.get(producer_id)

    def last_batch(self, producer_id: bytes, incarnation: int, index: int) -> LastBatch | None:
        """The last batch the producer appended to a shard, as last committed."""
        return self.store.producers.batches.get((producer_id, incarnation, index))

    # -- streams ------------------------------------------------------------

    async def create_stream(
        self,
        name: str,
        shard_count: int,
        *,
        retention_hours: int = 24,
        mode: StreamMode = StreamMode.PROVISIONED,
        tags: Mapping[str, str] | None = None,
        max_record_kib: int | None = None,
    ) -> StreamDescription:
        now = self.now_ms()
        return await self._apply(
            lambda c: c.create_stream(
                name,
                shard_count,
                now,
                retention_hours,
                mode=mode,
                tags=tags,
                max_record_kib=max_record_kib,
            )
        )

    async def change_settings(
        self, name: str, change: Callable[[StreamDescription], StreamDescription]
    ) -> tuple[StreamDescription, StreamDescription]:
        """Apply a catalog transition of a stream's settings; the stream before and after it.

        For the transitions that leave the shards alone (``catalog.add_tags``,
        ``set_mode``, ``set_shard_level_metrics``, ...). Both descriptions are
        the commit's, so "before" is exactly what the change was applied to.
        """

        def apply(c: Commit) -> tuple[StreamDescription, StreamDescription]:
            before = c.stream(name)
            return before, c.replace_stream(name, change)

        return await self._apply(apply)

    async def delete_stream(self, name: str, *, enforce_consumer_deletion: bool = False) -> None:
        """Remove a stream now; its data, checkpoints, leases and consumers go in chunks.

        Refused (``ResourceInUseError``) while consumers are registered, unless
        ``enforce_consumer_deletion``.
        """
        await self._apply(
            lambda c: consumers.delete_stream(
                c, name, enforce_consumer_deletion=enforce_consumer_deletion
            )
        )

    async def increase_retention(self, name: str, hours: int) -> StreamDescription:
        return await self._apply(
            lambda c: c.replace_stream(
                name, lambda d: catalog.set_retention(d, hours, increase=True)
            )
        )

    async def decrease_retention(self, name: str, hours: int) -> StreamDescription:
        return await self._apply(
            lambda c: c.replace_stream(
                name, lambda d: catalog.set_retention(d, hours, increase=False)
            )
        )

    async def split_shard(
        self, name: str, index: int, new_starting_hash_key: int
    ) -> StreamDescription:
        now = self.now_ms()
        limit = self.config.max_shards_per_stream
        return await self._apply(
            lambda c: c.replace_stream(
                name,
                lambda d: catalog.split(
                    d, index, new_starting_hash_key, now, c.ending_offset(d), max_shards=limit
                ),
            )
        )

    async def merge_shards(self, name: str, index: int, adjacent_index: int) -> StreamDescription:
        now = self.now_ms()
        return await self._apply(
            lambda c: c.replace_stream(
                name, lambda d: catalog.merge(d, index, adjacent_index, now, c.ending_offset(d))
            )
        )

    async def update_shard_count(self, name: str, target: int) -> StreamDescription:
        now = self.now_ms()
        limit = self.config.max_shards_per_stream
        return await self._apply(
            lambda c: c.replace_stream(
                name,
                lambda d: catalog.scale_uniformly(
                    d, target, now, c.ending_offset(d), max_shards=limit
                ),
            )
        )

    async def maintain(self) -> None:
        """Run a maintenance step now (retention trim, chunked deletes) in a commit."""
        await self._submit(Op(lambda c: None, maintain=True))

    # -- consumers (enhanced fan-out) -------------------------------------------

    async def register_consumer(
        self,
        stream: str,
        name: str,
        *,
        max_consumers: int,
        tags: Mapping[str, str] | None = None,
    ) -> Consumer:
        """Register a consumer, ACTIVE once committed (unique per stream, limited in number)."""
        now = self.now_ms()
        return await self._apply(
            lambda c: consumers.register(
                c, stream, name, now, max_consumers=max_consumers, tags=tags
            )
        )

    async def tag_consumer(
        self, stream: str, name: str, tags: Mapping[str, str], *, created_s: int | None = None
    ) -> None:
        """Add or overwrite a consumer's tags (at most 50 after); with ``created_s``, that one's."""
        await self._apply(lambda c: consumers.add_tags(c, stream, name, created_s, tags))

    async def untag_consumer(
        self, stream: str, name: str, tag_keys: Sequence[str], *, created_s: int | None = None
    ) -> None:
        """Remove a consumer's tags by key; with ``created_s``, only that consumer's."""
        await self._apply(lambda c: consumers.remove_tags(c, stream, name, created_s, tag_keys))

    async def deregister_consumer(
        self, stream: str, name: str, *, created_s: int | None = None
    ) -> Consumer:
        """Remove a consumer; with ``created_s`` (from its ARN), only if it is that one."""
        return await self._apply(lambda c: consumers.deregister(c, stream, name, created_s))

    def get_consumer(self, stream: str, name: str) -> Consumer | None:
        """The stream's consumer of that name, or None (a short read transaction)."""
        inc = self.describe(stream).incarnation
        env = self.store.environment
        with env.reading() as txn:
            return consumers.get_consumer(txn, env.dbs["consumers"], inc, name)

    def get_tagged_consumer(
        self, stream: str, name: str
    ) -> tuple[Consumer, tuple[tuple[str, str], ...]] | None:
        """The stream's consumer of that name and its tags (in key order), read together."""
        inc = self.describe(stream).incarnation
        env = self.store.environment
        with env.reading() as txn:
            return consumers.get_tagged_consumer(txn, env.dbs["consumers"], inc, name)

    def list_consumers(
        self, stream: str, *, after: str | None = None, limit: int | None = None
    ) -> list[Consumer]:
        """The stream's consumers in name order, named after ``after``, at most ``limit``."""
        inc = self.describe(stream).incarnation
        env = self.store.environment
        with env.reading() as txn:
            return consumers.list_consumers(
                txn, env.dbs["consumers"], inc, after=after, limit=limit
            )

    # -- leases and checkpoints ----------------------------------------------

    async def acquire_lease(
        self, stream: str, application: str, index: int, owner: str, duration_ms: int
    ) -> Lease:
        """Take the lease on a shard for an application: free, expired, or already ours."""
        now = self.now_ms()
        return await self._apply(
            lambda c: leases.acquire(c, stream, application, index, owner, duration_ms, now)
        )

    async def renew_lease(self, lease: Lease, duration_ms: int) -> Lease:
        """Extend a lease still held (same owner, same counter); else ``LeaseLostError``."""
        return await self._renew(lease, duration_ms, release=False)

    async def release_lease(self, lease: Lease) -> Lease:
        """Give a lease up; its counter stays, so a later owner's is higher."""
        return await self._renew(lease, 0, release=True)

    async def _renew(self, lease: Lease, duration_ms: int, *, release: bool) -> Lease:
        now = self.now_ms()
        return await self._apply(
            lambda c: leases.renew(
                c,
                self._name_of(lease.stream_incarnation),
                lease.application,
                lease.shard_index,
                lease.owner,
                lease.counter,
                duration_ms,
                now,
                release=release,
            )
        )

    async def checkpoint(
        self,
        stream: str,
        application: str,
        index: int,
        sequence_number: str,
        lease_counter: int | None = None,
    ) -> Checkpoint:
        """Record the last processed sequence number, or ``SHARD_END``, fenced by the lease."""
        desc = self.describe(stream)
        offset: int | None
        if sequence_number == SHARD_END:
            offset = None
        else:
            seq = decode_sequence(sequence_number)
            if seq.incarnation != desc.incarnation or seq.shard_index != index:
                raise InvalidArgumentError(
                    f"SequenceNumber {sequence_number} does not belong to shard {index} of "
                    f"stream {stream}"
                )
            offset = seq.offset
        now = self.now_ms()
        return await self._apply(
            lambda c: leases.checkpoint(
                c, stream, application, index, offset, lease_counter, now, desc.incarnation
            )
        )

    def _name_of(self, incarnation: int) -> str:
        desc = self.store.by_incarnation.get(incarnation)
        if desc is None:
            raise ResourceNotFoundError(f"the stream of incarnation {incarnation} was deleted")
        return desc.name

    # -- reads (synchronous, short) -----------------------------------------

    def describe(self, name: str) -> StreamDescription:
        return reader.stream_named(self.store, name)

    def list_streams(self) -> list[str]:
        return sorted(self.store.streams)

    def tail(self, name: str, index: int) -> ShardTail:
        desc = self.describe(name)
        desc.shard(index)
        return self.store.tails.get((desc.incarnation, index), ShardTail())

    def resolve(
        self,
        name: str,
        index: int,
        position: PositionType | str,
        *,
        sequence_number: str | None = None,
        timestamp_ms: int | None = None,
    ) -> int:
        return reader.resolve(
            self.store,
            name,
            index,
            position,
            sequence_number=sequence_number,
            timestamp_ms=timestamp_ms,
        )

    def read(
        self,
        name: str,
        index: int,
        offset: int,
        *,
        max_records: int = reader.DEFAULT_MAX_RECORDS,
        max_bytes: int = reader.DEFAULT_MAX_BYTES,
    ) -> reader.ReadResult:
        return reader.read(
            self.store, name, index, offset, max_records=max_records, max_bytes=max_bytes
        )

    def read_batches(
        self,
        name: str,
        index: int,
        offset: int,
        *,
        max_records: int = reader.DEFAULT_MAX_RECORDS,
        max_bytes: int = reader.DEFAULT_MAX_BYTES,
    ) -> tuple[list[reader.StoredBatch], reader.ReadResult]:
        return reader.read_batches(
            self.store, name, index, offset, max_records=max_records, max_bytes=max_bytes
        )

    def _application_record(
        self, db: str, stream: str, application: str, index: int
    ) -> tuple[int, bytes | None]:
        desc = self.describe(stream)
        with self.store.environment.reading() as txn:
            raw = txn.get(
                keys.application(desc.incarnation, application, index),
                db=self.store.environment.dbs[db],
            )
        return desc.incarnation, raw

    def get_checkpoint(self, stream: str, application: str, index: int) -> Checkpoint | None:
        inc, raw = self._application_record("checkpoints", stream, application, index)
        return None if raw is None else leases.decode_checkpoint(inc, application, index, raw)

    def get_lease(self, stream: str, application: str, index: int) -> Lease | None:
        inc, raw = self._application_record("leases", stream, application, index)
        return None if raw is None else leases.decode_lease(inc, application, index, raw)

    def list_leases(
        self, stream: str, application: str, *, after: int = -1, limit: int | None = None
    ) -> list[Lease]:
        """The application's leases on the stream, in shard order, above shard ``after``."""
        inc = self.describe(stream).incarnation
        with self.store.environment.reading() as txn:
            return leases.list_leases(
                txn,
                self.store.environment.dbs["leases"],
                inc,
                application,
                after=after,
                limit=limit,
            )


@asynccontextmanager
async def open_log(
    path: str | os.PathLike[str],
    config: LogConfig = LogConfig(),
    *,
    clock: Clock = wall_clock_ms,
) -> AsyncIterator[Log]:
    """Open the log of a data directory; on exit, finish queued writes and close it."""
    store = LogStore(LogEnvironment(path, config.env), config)
    try:
        log = Log(store, clock)
        try:
            yield log
        finally:
            await log._close()
    finally:
        store.close()
