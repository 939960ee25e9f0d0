"""The log's write side: the catalog, the shard tails, and the group commit.

``LogStore`` is synchronous. Its one writer (``commit``) runs in the writer
thread (``broker.log.writer``): it takes every operation that queued up since
the last commit and applies them in order inside **one** LMDB write
transaction with **one** durable commit. Appends to the same shard in one
commit become one stored batch (``broker.log.batch``); other operations
(create, delete, reshard, retention, leases, checkpoints, maintenance) apply
between them in queue order.

Every operation validates against the staged view of the catalog before it
writes, so a refused operation writes nothing and the others of its commit go
ahead. A commit that fails as a whole (map full, disk full) writes nothing at
all: a full map is grown and the commit retried; anything else fails every
operation of the commit. The in-memory state (catalog and shard tails) is
changed only after LMDB confirmed the commit, and only by the writer thread;
readers on other threads see each published object whole.

Maintenance rides in commits: each commit deletes at most ``delete_chunk``
keys of dropped streams and of batches past retention, and examines at most
``delete_chunk`` keys of the producer table (``broker.log.producers``), so
large deletions never stall producers.

An append may carry a producer stamp (an idempotent batch, one shard): it is
checked against the producer table *before* its shard is (a retry of a batch
committed before a reshard closed the shard is still answered), answered
with the original's offsets if it repeats the producer's last batch, and
otherwise appended with the producer's row written in the same transaction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import lmdb
import msgpack

from ..errors import (
    InternalFailureError,
    LimitExceededError,
    ResourceInUseError,
    ResourceNotFoundError,
    ShardClosedError,
    ShardlineError,
    ShardMismatchError,
)
from ..model import (
    ShardTail,
    StreamDescription,
    StreamMode,
    shard_id,
    validate_stream_name,
)
from . import batch as fmt
from . import catalog, keys
from .env import EnvConfig, LogEnvironment, storage_error
from .producers import LastBatch, Placed, ProducerStamp, ProducerTable, StagedProducers

HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Settings of the log; every bound has a size."""

    env: EnvConfig = EnvConfig()
    #: Most shards a stream may have open (CreateStream, splits, UpdateShardCount).
    max_shards_per_stream: int = 1024
    #: Bytes of appends that may wait for a commit; appenders wait when it is full.
    max_pending_bytes: int = 64 << 20
    #: Keys deleted per commit by maintenance (dropped streams, retention).
    delete_chunk: int = 1024
    #: Seconds between retention checks.
    maintenance_interval: float = 1.0


@dataclass(slots=True)
class Op:
    """One queued write: ``fn`` applies it to the staged commit and returns its result."""

    fn: Callable[[Commit], Any]
    result: Any = None
    error: ShardlineError | None = None
    nbytes: int = 64
    #: Run a maintenance step (retention, chunked deletes) in this op's commit.
    maintain: bool = False
    #: Set by the async side: what wakes the waiter once the commit is durable.
    done: Any = None


@dataclass(slots=True)
class AppendOp:
    """Records for one or more shards of one stream; all of them commit, or none."""

    stream: str
    incarnation: int | None
    segments: dict[int, fmt.Segment]
    nbytes: int
    result: AppendResult | None = None
    error: ShardlineError | None = None
    done: Any = None
    #: An idempotent batch's producer and number (then ``segments`` has one shard).
    producer: ProducerStamp | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an append landed: per shard index, (first offset, record count).

    ``deduplicated``: an idempotent batch that repeated its producer's last
    one; ``ranges`` are that batch's, and nothing was appended.
    """

    incarnation: int
    ranges: dict[int, tuple[int, int]]
    deduplicated: bool = False


@dataclass(frozen=True, slots=True)
class CommittedBatch:
    """A batch that a commit stored: handed to commit listeners (the fan-out's tail)."""

    incarnation: int
    shard_index: int
    first_offset: int
    count: int
    value: bytes


@dataclass(slots=True)
class CommitReport:
    batches: list[CommittedBatch] = field(default_factory=list)
    #: Incarnations of the streams whose description changed (reshard, delete, ...).
    changed_streams: list[int] = field(default_factory=list)
    #: True when maintenance ran out of its chunk budget and wants another commit.
    more_maintenance: bool = False
    #: Operations the commit carried, and its wall time in the writer thread (staging
    #: the values and the durable commit); set by the group committer.
    operations: int = 0
    seconds: float = 0.0


class Commit:
    """The staged view of one write transaction: reads see earlier changes of the same commit."""

    def __init__(self, store: LogStore, txn: Any) -> None:
        self.store = store
        self.txn = txn
        self.dbs = store.environment.dbs
        self.streams: dict[str, StreamDescription | None] = {}
        self.by_incarnation: dict[int, StreamDescription | None] = {}
        self.tails: dict[tuple[int, int], ShardTail] = {}
        self.last_incarnation = store.last_incarnation
        self.drops_added: list[int] = []
        self.drops_done: list[int] = []
        self.report = CommitReport()
        self._producers: StagedProducers | None = None
        #: Retries of a batch placed earlier in this commit: answered once it is written.
        self._echoes: list[tuple[AppendOp, int, Placed]] = []

    # -- staged reads -------------------------------------------------------

    def stream(self, name: str) -> StreamDescription:
        desc = self.streams[name] if name in self.streams else self.store.streams.get(name)
        if desc is None:
            raise ResourceNotFoundError(f"Stream {name} not found")
        return desc

    def tail(self, inc: int, index: int) -> ShardTail:
        key = (inc, index)
        tail = self.tails.get(key)
        if tail is None:
            tail = self.store.tails.get(key, ShardTail())
        return tail

    def ending_offset(self, desc: StreamDescription) -> Callable[[int], int]:
        return lambda index: self.tail(desc.incarnation, index).newest_offset

    def is_live(self, inc: int) -> bool:
        """Whether incarnation ``inc`` is a stream that exists in this commit."""
        if inc in self.by_incarnation:
            return self.by_incarnation[inc] is not None
        return inc in self.store.by_incarnation

    @property
    def producers(self) -> StagedProducers:
        """The producer table as this commit sees it (made on first use)."""
        if self._producers is None:
            self._producers = StagedProducers(self.store.producers, self.txn, self.dbs["producers"])
        return self._producers

    # -- staged writes ------------------------------------------------------

    def put_stream(self, desc: StreamDescription) -> None:
        self.streams[desc.name] = desc
        self.by_incarnation[desc.incarnation] = desc
        self.report.changed_streams.append(desc.incarnation)
        self.txn.put(
            keys.incarnation(desc.incarnation),
            msgpack.packb(catalog.to_record(desc)),
            db=self.dbs["streams"],
        )

    def put_tail(self, inc: int, index: int, tail: ShardTail, *, persist: bool) -> None:
        self.tails[(inc, index)] = tail
        if persist:
            self.txn.put(
                keys.shard(inc, index),
                msgpack.packb([tail.next_offset, tail.last_arrival_ms]),
                db=self.dbs["tails"],
            )

    # -- stream operations --------------------------------------------------

    def create_stream(
        self,
        name: str,
        shard_count: int,
        now_ms: int,
        retention_hours: int,
        *,
        mode: StreamMode = StreamMode.PROVISIONED,
        tags: Mapping[str, str] | None = None,
        max_record_kib: int | None = None,
    ) -> StreamDescription:
        validate_stream_name(name)
        existing = self.streams[name] if name in self.streams else self.store.streams.get(name)
        if existing is not None:
            raise ResourceInUseError(f"Stream {name} already exists")
        if self.last_incarnation >= (1 << 32) - 1:
            raise LimitExceededError("the broker has used every stream incarnation number")
        desc = catalog.new_stream(
            name,
            self.last_incarnation + 1,
            shard_count,
            now_ms,
            max_shards=self.store.config.max_shards_per_stream,
            retention_hours=retention_hours,
            mode=mode,
            tags=tags,
            max_record_kib=max_record_kib,
        )
        self.last_incarnation = desc.incarnation
        self.txn.put(keys.INCARNATION_KEY, keys.incarnation(desc.incarnation), db=self.dbs["meta"])
        self.put_stream(desc)
        for shard in desc.shards:
            self.tails[(desc.incarnation, shard.index)] = ShardTail()
        return desc

    def delete_stream(self, name: str) -> StreamDescription:
        desc = self.stream(name)
        self.txn.delete(keys.incarnation(desc.incarnation), db=self.dbs["streams"])
        self.txn.put(keys.drop(desc.incarnation), b"", db=self.dbs["meta"])
        self.streams[name] = None
        self.by_incarnation[desc.incarnation] = None
        self.drops_added.append(desc.incarnation)
        self.report.changed_streams.append(desc.incarnation)
        return desc

    def replace_stream(
        self, name: str, change: Callable[[StreamDescription], StreamDescription]
    ) -> StreamDescription:
        """Apply a pure catalog transition; persist the closed shards' tails with it."""
        before = self.stream(name)
        after = change(before)
        inc = after.incarnation
        was_open = {s.index: s.is_open for s in before.shards}
        for shard in after.shards:
            if shard.index not in was_open:
                self.tails[(inc, shard.index)] = ShardTail()
            if not shard.is_open and was_open.get(shard.index, True):
                self.put_tail(inc, shard.index, self.tail(inc, shard.index), persist=True)
        self.put_stream(after)
        return after

    # -- appends ------------------------------------------------------------

    def check_append(self, op: AppendOp) -> StreamDescription | None:
        """The stream to append to; None for a retried idempotent batch (its result is set)."""
        desc = self.stream(op.stream)
        if op.incarnation is not None and op.incarnation != desc.incarnation:
            raise ResourceNotFoundError(
                f"Stream {op.stream} was deleted and created again since the append was routed"
            )
        if op.producer is not None:
            return self._check_idempotent(op, op.producer, desc)
        for index in op.segments:
            shard = desc.shard(index)
            if not shard.is_open:
                raise ShardClosedError(
                    f"Shard {shard.shard_id} in stream {desc.name} is closed: route the "
                    "record again with the current shard map"
                )
        return desc

    def _check_idempotent(
        self, op: AppendOp, stamp: ProducerStamp, desc: StreamDescription
    ) -> StreamDescription | None:
        """The producer's verdict first, then the shard: a retry is answered even if it closed."""
        ((index, segment),) = op.segments.items()
        inc = desc.incarnation
        original = self.producers.decide(stamp, inc, index, segment.count, desc.name)
        if isinstance(original, LastBatch):
            op.result = AppendResult(
                inc, {index: (original.first_offset, original.count)}, deduplicated=True
            )
            return None
        if original is not None:
            self._echoes.append((op, inc, original))
            return None
        shard = next((s for s in desc.shards if s.index == index), None)
        if shard is None or not shard.is_open:
            state = "does not exist" if shard is None else "is closed (split or merged)"
            raise ShardMismatchError(
                f"ShardId {shard_id(index)} of stream {desc.name} {state}: refresh the shard "
                "map and route the records again"
            )
        self.producers.accept(stamp, inc, index, segment.count, op)
        return desc

    def write_producers(self) -> None:
        """Write the commit's producer rows (after its appends) and answer same-commit retries."""
        if self._producers is None:
            return
        self._producers.write()
        for op, inc, original in self._echoes:
            last = original.last()
            op.result = AppendResult(
                inc, {original.index: (last.first_offset, last.count)}, deduplicated=True
            )
        self._echoes.clear()

    def write_appends(
        self, pending: dict[tuple[int, int], list[tuple[AppendOp, fmt.Segment]]]
    ) -> None:
        """Store one batch per shard for everything collected, and give each op its range."""
        db = self.dbs["batches"]
        for (inc, index), entries in pending.items():
            tail = self.tail(inc, index)
            first = tail.next_offset
            segments = [segment for _, segment in entries]
            count, payload = fmt.join_payload(segments)
            value = fmt.build_value(
                first, count, segments[0].first_arrival_ms, segments[-1].last_arrival_ms, payload
            )
            self.txn.put(keys.batch(inc, index, first), value, db=db)
            offset = first
            for op, segment in entries:
                assert op.result is not None
                op.result.ranges[index] = (offset, segment.count)
                offset += segment.count
            horizon = tail.horizon if tail.horizon < tail.next_offset else first
            self.tails[(inc, index)] = ShardTail(
                horizon, first + count, max(tail.last_arrival_ms, segments[-1].last_arrival_ms)
            )
            self.report.batches.append(CommittedBatch(inc, index, first, count, value))
        pending.clear()

    # -- maintenance --------------------------------------------------------

    def maintain(self, now_ms: int | None) -> None:
        """Delete dropped streams' keys, then trim past retention, within one chunk budget."""
        budget = self.store.config.delete_chunk
        for inc in [*self.store.drops, *self.drops_added]:
            if inc in self.drops_done:
                continue
            prefix = keys.incarnation(inc)
            for name in ("batches", "tails", "checkpoints", "leases", "consumers"):
                budget -= _delete_prefix(self.txn, self.dbs[name], prefix, budget)
                if budget <= 0:
                    self.report.more_maintenance = True
                    return
            self.txn.delete(keys.drop(inc), db=self.dbs["meta"])
            self.drops_done.append(inc)
        if now_ms is None:
            return
        if self.producers.sweep(now_ms, self.store.config.delete_chunk, self.is_live):
            self.report.more_maintenance = True
        streams: dict[str, StreamDescription | None] = {**self.store.streams, **self.streams}
        for desc in streams.values():
            if desc is None:
                continue
            cutoff = now_ms - desc.retention_hours * HOUR_MS
            for shard in desc.shards:
                budget -= self._trim_shard(desc.incarnation, shard.index, cutoff, budget)
                if budget <= 0:
                    self.report.more_maintenance = True
                    return

    def _trim_shard(self, inc: int, index: int, cutoff_ms: int, budget: int) -> int:
        tail = self.tail(inc, index)
        prefix = keys.shard(inc, index)
        cursor = self.txn.cursor(db=self.dbs["batches"])
        deleted = 0
        horizon = tail.horizon
        found = cursor.set_range(prefix)
        while found and deleted < budget and cursor.key()[:8] == prefix:
            header = fmt.read_header(cursor.value())
            if header.last_arrival_ms >= cutoff_ms:
                break
            horizon = header.end_offset
            found = cursor.delete()
            deleted += 1
        cursor.close()
        if deleted:
            self.put_tail(inc, index, dataclasses.replace(tail, horizon=horizon), persist=True)
        return deleted


def _delete_prefix(txn: Any, db: Any, prefix: bytes, budget: int) -> int:
    cursor = txn.cursor(db=db)
    deleted = 0
    found = cursor.set_range(prefix)
    while found and deleted < budget and cursor.key()[: len(prefix)] == prefix:
        found = cursor.delete()
        deleted += 1
    cursor.close()
    return deleted


class LogStore:
    """The log's state and its one writer. Synchronous; see the module docstring."""

    def __init__(self, environment: LogEnvironment, config: LogConfig = LogConfig()) -> None:
        self.environment = environment
        self.config = config
        self.streams: dict[str, StreamDescription] = {}
        self.by_incarnation: dict[int, StreamDescription] = {}
        self.tails: dict[tuple[int, int], ShardTail] = {}
        self.drops: list[int] = []
        self.last_incarnation = 0
        self.producers = ProducerTable()
        self._load()

    def _load(self) -> None:
        """Rebuild the catalog and every shard's tail from what is stored."""
        dbs = self.environment.dbs
        with self.environment.reading() as txn:
            raw = txn.get(keys.INCARNATION_KEY, db=dbs["meta"])
            self.last_incarnation = 0 if raw is None else int.from_bytes(raw, "big")
            cursor = txn.cursor(db=dbs["meta"])
            if cursor.set_range(keys.DROP_PREFIX):
                for key in cursor.iternext(values=False):
                    if not key.startswith(keys.DROP_PREFIX):
                        break
                    self.drops.append(int.from_bytes(key[len(keys.DROP_PREFIX) :], "big"))
            for _, value in txn.cursor(db=dbs["streams"]):
                desc = catalog.from_record(msgpack.unpackb(value))
                self.streams[desc.name] = desc
                self.by_incarnation[desc.incarnation] = desc
            for desc in self.streams.values():
                for shard in desc.shards:
                    self.tails[(desc.incarnation, shard.index)] = self._load_tail(
                        txn, desc.incarnation, shard.index
                    )
            self.producers.load(txn, dbs["producers"], self.by_incarnation.__contains__)

    def _load_tail(self, txn: Any, inc: int, index: int) -> ShardTail:
        dbs = self.environment.dbs
        raw = txn.get(keys.shard(inc, index), db=dbs["tails"])
        # What a shard whose records were all trimmed still knows: [next offset, last arrival].
        floor, floor_ms = (1, 0) if raw is None else msgpack.unpackb(raw)
        cursor = txn.cursor(db=dbs["batches"])
        prefix = keys.shard(inc, index)
        if not cursor.set_range(prefix) or cursor.key()[:8] != prefix:
            return ShardTail(floor, floor, floor_ms)
        horizon = fmt.read_header(cursor.value()).first_offset
        # The shard's last batch: the key just before the next shard's prefix.
        if cursor.set_range(keys.shard(inc, index + 1)):
            cursor.prev()
        else:
            cursor.last()
        last = fmt.read_header(cursor.value())
        return ShardTail(horizon, max(floor, last.end_offset), max(floor_ms, last.last_arrival_ms))

    def commit(
        self, ops: Iterable[AppendOp | Op], now_ms: int | None = None, *, maintain: bool = False
    ) -> CommitReport:
        """Apply ``ops`` in one durable transaction; each op gets its result or error.

        ``maintain`` adds a chunk of maintenance (dropped streams always; retention
        too when ``now_ms`` is given).
        """
        ops = list(ops)
        env = self.environment
        while True:
            for op in ops:
                op.error = None
                op.result = None
            try:
                # Buffers: values read while writing (batch headers for trims, leases)
                # are views, not copies; nothing read keeps them past the commit.
                with env.env.begin(write=True, buffers=True) as txn:
                    staged = Commit(self, txn)
                    self._apply(staged, ops)
                    if maintain or self.drops:
                        staged.maintain(now_ms if maintain else None)
                break
            except lmdb.MapFullError:
                # grow() raises StorageFullError at the cap; raised inside this handler it
                # would skip the sibling ``except ShardlineError`` below, so catch it here.
                try:
                    env.grow()
                except ShardlineError as exc:
                    for op in ops:
                        op.error = exc
                        op.result = None
                    return CommitReport()
            except lmdb.Error as exc:
                error = storage_error(exc, env.path) or InternalFailureError(
                    f"the log failed to commit: {exc}"
                )
                for op in ops:
                    op.error = error
                    op.result = None
                return CommitReport()
            except ShardlineError as exc:  # e.g. a corrupt batch met by maintenance
                for op in ops:
                    op.error = exc
                    op.result = None
                return CommitReport()
        self._publish(staged)
        return staged.report

    def _apply(self, staged: Commit, ops: list[AppendOp | Op]) -> None:
        pending: dict[tuple[int, int], list[tuple[AppendOp, fmt.Segment]]] = {}
        for op in ops:
            if isinstance(op, AppendOp):
                try:
                    desc = staged.check_append(op)
                except ShardlineError as exc:
                    op.error = exc
                    continue
                if desc is None:
                    continue
                op.result = AppendResult(desc.incarnation, {})
                for index, segment in op.segments.items():
                    pending.setdefault((desc.incarnation, index), []).append((op, segment))
                continue
            if pending:
                staged.write_appends(pending)
            try:
                op.result = op.fn(staged)
            except ShardlineError as exc:
                op.error = exc
        if pending:
            staged.write_appends(pending)
        staged.write_producers()

    def _publish(self, staged: Commit) -> None:
        """Make a committed transaction's changes visible, object by object.

        The producer table goes first: whoever sees a reshard of this commit
        then also sees the batches this commit appended before it (the
        operations layer reads the catalog, then the producer table).
        """
        if staged._producers is not None:
            staged._producers.publish()
        if staged.streams:
            streams = dict(self.streams)
            by_incarnation = dict(self.by_incarnation)
            for name, desc in staged.streams.items():
                if desc is None:
                    streams.pop(name, None)
                else:
                    streams[name] = desc
            for inc, desc in staged.by_incarnation.items():
                if desc is None:
                    by_incarnation.pop(inc, None)
                else:
                    by_incarnation[inc] = desc
            self.streams, self.by_incarnation = streams, by_incarnation
        self.tails.update(staged.tails)
        for inc in staged.drops_added:
            self.drops.append(inc)
            for key in [k for k in self.tails if k[0] == inc]:
                del self.tails[key]
            self.producers.forget_incarnation(inc)
        for inc in staged.drops_done:
            self.drops.remove(inc)
        self.last_incarnation = staged.last_incarnation

    def close(self) -> None:
        self.environment.close()
