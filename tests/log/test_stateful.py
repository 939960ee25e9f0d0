"""The log against a plain-Python model, driven by a hypothesis state machine.

Random appends (routed by partition key), reads from random positions with
random bounds, retention trims (the fake clock moves, maintenance runs),
splits, merges, checkpoints, reopens of the data directory, and deletes and
re-creates of the same stream names. After every step the log's catalog,
tails, checkpoints and every stored record must equal the model's.

The log is async (trio) and the state machine is not: ``LogHost`` runs a trio
loop in a thread that keeps one log open, and every rule calls into it with
``trio.from_thread``. Closing and opening the log again is a rule of its own,
so in-memory state is checked both as it evolves and as it is rebuilt from
disk.

Time moves only in the trim rule. Between trims every append arrives at the
same millisecond and nothing new becomes old, so maintenance that runs on its
own (the chunked deletion of dropped streams) cannot trim anything the model
does not expect.
"""

from __future__ import annotations

import hashlib
import itertools
import queue
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from broker.errors import (
    InvalidArgumentError,
    ResourceInUseError,
    ResourceNotFoundError,
    ShardClosedError,
)
from broker.hashing import ShardRouter, even_ranges
from broker.log import EnvConfig, Log, LogConfig, ReadResult, open_log
from broker.model import MAX_HASH_KEY, SHARD_END, HashKeyRange
from broker.sequence import encode

from .conformance import FakeClock
from .test_conformance import stored_keys

T = TypeVar("T")
HOUR_MS = 3_600_000
RETENTION_HOURS = 24
NAMES = ("alpha", "beta")
APPS = ("app",)
MAX_OPEN_SHARDS = 6

#: (arrival_ms, partition_key, data), as the log hands records out.
Rec = tuple[int, str, bytes]


class LogHost:
    """A trio loop in a thread holding one open log; the synchronous test calls into it."""

    def __init__(self, path: str, config: LogConfig, clock: Callable[[], int]) -> None:
        self._path, self._config, self._clock = path, config, clock
        self._replies: queue.Queue[BaseException | None] = queue.Queue()
        self._commands: trio.MemorySendChannel[str] | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self.log: Log | None = None
        self._thread = threading.Thread(target=self._thread_main, daemon=True)
        self._thread.start()
        self._wait()

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            self._replies.put(exc)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        send, receive = trio.open_memory_channel[str](1)
        self._commands = send
        while True:
            try:
                async with open_log(self._path, self._config, clock=self._clock) as log:
                    self.log = log
                    self._replies.put(None)
                    command = await receive.receive()
                    self.log = None
            except Exception as exc:
                self._replies.put(exc)
                return
            if command == "stop":
                self._replies.put(None)
                return

    def _wait(self) -> None:
        reply = self._replies.get(timeout=60)
        if reply is not None:
            raise reply

    def run(self, fn: Callable[[Log], Awaitable[T]]) -> T:
        """Run ``fn(log)`` on the trio thread and return what it returns."""

        async def call() -> T:
            assert self.log is not None
            return await fn(self.log)

        return trio.from_thread.run(call, trio_token=self._token)

    def read(self, fn: Callable[[Log], T]) -> T:
        """Run a synchronous read on the trio thread, as the broker does."""

        def call() -> T:
            assert self.log is not None
            return fn(self.log)

        return trio.from_thread.run_sync(call, trio_token=self._token)

    def _command(self, command: str) -> None:
        assert self._commands is not None
        trio.from_thread.run(self._commands.send, command, trio_token=self._token)
        self._wait()

    def reopen(self) -> None:
        self._command("reopen")

    def stop(self) -> None:
        if self._thread.is_alive():
            self._command("stop")
        self._thread.join(timeout=60)


# -- the model -----------------------------------------------------------------


@dataclass
class ModelShard:
    index: int
    hash_range: HashKeyRange
    parents: tuple[int, ...] = ()
    ending: int | None = None
    #: Stored batches: (first offset, records), oldest first.
    batches: list[tuple[int, list[Rec]]] = field(default_factory=list)
    next_offset: int = 1
    horizon: int = 1
    #: Arrival of the newest record ever appended, trimmed or not (0: none yet).
    last_arrival: int = 0

    @property
    def is_open(self) -> bool:
        return self.ending is None

    def stored(self) -> list[tuple[int, Rec]]:
        return [(first + i, rec) for first, recs in self.batches for i, rec in enumerate(recs)]


@dataclass
class ModelStream:
    name: str
    incarnation: int
    shards: dict[int, ModelShard]
    next_index: int
    checkpoints: dict[tuple[str, int], int | None] = field(default_factory=dict)

    def open_shards(self) -> list[ModelShard]:
        return sorted(
            (s for s in self.shards.values() if s.is_open), key=lambda s: s.hash_range.start
        )

    def route(self, key: str) -> int:
        h = int.from_bytes(hashlib.md5(key.encode()).digest(), "big")
        return next(s.index for s in self.open_shards() if h in s.hash_range)

    def children_of(self, index: int) -> list[int]:
        return sorted(s.index for s in self.shards.values() if index in s.parents)


keys_strategy = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12
)
records_strategy = st.lists(
    st.tuples(keys_strategy, st.binary(max_size=24)), min_size=1, max_size=20
)
positions = st.sampled_from(
    ["TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "AT_TIMESTAMP"]
)


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="shardline-stateful-")
        self.clock = FakeClock()
        config = LogConfig(
            env=EnvConfig(map_size=16 << 20, sync=False),
            delete_chunk=4,
            maintenance_interval=1e9,
        )
        self.host = LogHost(self.directory, config, self.clock)
        self.streams: dict[str, ModelStream] = {}
        self.incarnations_used: set[int] = set()
        self.dropped: list[int] = []

    def teardown(self) -> None:
        try:
            self.host.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------

    def expect(self, error: type[Exception], fn: Callable[[Log], Awaitable[Any]]) -> None:
        with pytest.raises(error):
            self.host.run(fn)

    def settle(self, done: Callable[[Log], bool]) -> None:
        """Run maintenance steps until ``done(log)`` holds (bounded)."""

        async def steps(log: Log) -> bool:
            for _ in range(500):
                await log.maintain()
                if done(log):
                    return True
            return False

        assert self.host.run(steps), "maintenance did not reach the model's state"

    def pick_shard(self, stream: ModelStream, choice: int) -> ModelShard:
        ordered = sorted(stream.shards)
        return stream.shards[ordered[choice % len(ordered)]]

    # -- streams -----------------------------------------------------------------

    @initialize(counts=st.tuples(st.integers(1, 3), st.integers(1, 3)))
    def create_streams(self, counts: tuple[int, int]) -> None:
        for name, count in zip(NAMES, counts, strict=True):
            self.create_stream(name, count)

    @rule(name=st.sampled_from(NAMES), count=st.integers(1, 3))
    def create_stream(self, name: str, count: int) -> None:
        if name in self.streams:
            self.expect(ResourceInUseError, lambda log: log.create_stream(name, count))
            return
        desc = self.host.run(lambda log: log.create_stream(name, count))
        assert desc.incarnation not in self.incarnations_used
        assert all(desc.incarnation > inc for inc in self.incarnations_used)
        self.incarnations_used.add(desc.incarnation)
        shards = {i: ModelShard(i, r) for i, r in enumerate(even_ranges(count))}
        self.streams[name] = ModelStream(name, desc.incarnation, shards, count)

    @rule(name=st.sampled_from(NAMES), again=st.integers(0, 3))
    def delete_stream(self, name: str, again: int) -> None:
        """Delete a stream and, unless ``again`` is 0, create it again with that many shards."""
        if name not in self.streams:
            self.expect(ResourceNotFoundError, lambda log: log.delete_stream(name))
            return
        self.host.run(lambda log: log.delete_stream(name))
        self.dropped.append(self.streams.pop(name).incarnation)
        if again:
            self.create_stream(name, again)

    @rule()
    def finish_deletions(self) -> None:
        """Dropped streams' keys all go, in chunks, whatever happened meanwhile."""
        dropped = list(self.dropped)
        self.settle(lambda log: all(stored_keys(log.store, inc) == 0 for inc in dropped))
        self.dropped.clear()

    # -- appends -----------------------------------------------------------------

    @rule(name=st.sampled_from(NAMES), records=records_strategy)
    def append(self, name: str, records: list[tuple[str, bytes]]) -> None:
        stream = self.streams.get(name)
        if stream is None:
            self.expect(ResourceNotFoundError, lambda log: log.append(name, {0: records}))
            return
        routed: dict[int, list[tuple[str, bytes]]] = {}
        for key, data in records:
            routed.setdefault(stream.route(key), []).append((key, data))
        desc = self.host.read(lambda log: log.describe(name))
        assert ShardRouter(desc.shards).group(records) == routed
        result = self.host.run(lambda log: log.append(name, routed, incarnation=stream.incarnation))
        assert result.incarnation == stream.incarnation
        now = self.clock.now
        for index, recs in routed.items():
            shard = stream.shards[index]
            assert result.ranges[index] == (shard.next_offset, len(recs))
            if not shard.batches:
                shard.horizon = shard.next_offset
            shard.batches.append((shard.next_offset, [(now, k, d) for k, d in recs]))
            shard.next_offset += len(recs)
            shard.last_arrival = now

    @rule(records=records_strategy)
    def append_to_every_stream(self, records: list[tuple[str, bytes]]) -> None:
        """A second append rule, so that the shards hold data more often than not."""
        for name in sorted(self.streams):
            self.append(name, records)

    @rule(name=st.sampled_from(NAMES), choice=st.integers(0, 50))
    def append_to_closed_shard(self, name: str, choice: int) -> None:
        stream = self.streams.get(name)
        if stream is None:
            return
        closed = [s for s in stream.shards.values() if not s.is_open]
        if not closed:
            return
        index = closed[choice % len(closed)].index
        self.expect(ShardClosedError, lambda log: log.append(name, {index: [("k", b"x")]}))

    # -- time ----------------------------------------------------------------------

    @rule(
        ms=st.integers(1, 6 * HOUR_MS)
        | st.sampled_from(
            [1, HOUR_MS, 12 * HOUR_MS, RETENTION_HOURS * HOUR_MS, RETENTION_HOURS * HOUR_MS + 1]
        )
    )
    def advance_clock_and_trim(self, ms: int) -> None:
        now = self.clock.advance(ms)
        cutoff = now - RETENTION_HOURS * HOUR_MS
        for stream in self.streams.values():
            for shard in stream.shards.values():
                while shard.batches and shard.batches[0][1][-1][0] < cutoff:
                    shard.batches.pop(0)
                shard.horizon = shard.batches[0][0] if shard.batches else shard.next_offset

        expected = {
            (s.name, sh.index): sh.horizon
            for s in self.streams.values()
            for sh in s.shards.values()
        }
        self.settle(lambda log: all(log.tail(n, i).horizon == h for (n, i), h in expected.items()))

    # -- resharding --------------------------------------------------------------------

    @rule(name=st.sampled_from(NAMES), choice=st.integers(0, 50), fraction=st.integers(0, 1024))
    def split_shard(self, name: str, choice: int, fraction: int) -> None:
        stream = self.streams.get(name)
        if stream is None:
            return
        shard = self.pick_shard(stream, choice)
        low, high = shard.hash_range.start, shard.hash_range.end
        # Kinesis: low + 1 < key < high, so a range of fewer than 4 keys cannot be split.
        key = low + 2 + max(0, high - low - 3) * fraction // 1024
        if not shard.is_open:
            self.expect(ResourceInUseError, lambda log: log.split_shard(name, shard.index, key))
            return
        if high - low < 3:
            self.expect(InvalidArgumentError, lambda log: log.split_shard(name, shard.index, key))
            return
        if len(stream.open_shards()) >= MAX_OPEN_SHARDS:
            return
        self.host.run(lambda log: log.split_shard(name, shard.index, key))
        shard.ending = shard.next_offset - 1
        n = stream.next_index
        stream.shards[n] = ModelShard(n, HashKeyRange(low, key - 1), (shard.index,))
        stream.shards[n + 1] = ModelShard(n + 1, HashKeyRange(key, high), (shard.index,))
        stream.next_index = n + 2

    @rule(name=st.sampled_from(NAMES), choice=st.integers(0, 50), swap=st.booleans())
    def merge_shards(self, name: str, choice: int, swap: bool) -> None:
        stream = self.streams.get(name)
        if stream is None:
            return
        ordered = stream.open_shards()
        if len(ordered) < 2:
            return
        i = choice % (len(ordered) - 1)
        a, b = ordered[i], ordered[i + 1]
        if swap:
            a, b = b, a
        self.host.run(lambda log: log.merge_shards(name, a.index, b.index))
        for parent in (a, b):
            parent.ending = parent.next_offset - 1
        n = stream.next_index
        merged = HashKeyRange(
            min(a.hash_range.start, b.hash_range.start), max(a.hash_range.end, b.hash_range.end)
        )
        stream.shards[n] = ModelShard(n, merged, (a.index, b.index))
        stream.next_index = n + 1

    # -- checkpoints ----------------------------------------------------------------------

    @rule(
        name=st.sampled_from(NAMES),
        choice=st.integers(0, 50),
        back=st.integers(-1, 5),
        shard_end=st.booleans(),
    )
    def checkpoint(self, name: str, choice: int, back: int, shard_end: bool) -> None:
        stream = self.streams.get(name)
        if stream is None:
            return
        shard = self.pick_shard(stream, choice)
        if shard_end:  # only a closed shard can be processed to its end
            if shard.is_open:
                self.expect(
                    InvalidArgumentError,
                    lambda log: log.checkpoint(name, "app", shard.index, SHARD_END),
                )
                return
            cp = self.host.run(lambda log: log.checkpoint(name, "app", shard.index, SHARD_END))
            assert cp.shard_end
            stream.checkpoints[("app", shard.index)] = None
            return
        offset = shard.next_offset - 1 - back  # back == -1: one beyond the newest record
        if offset < 0:
            return
        seq = encode(stream.incarnation, shard.index, offset)
        if offset > shard.next_offset - 1:
            self.expect(
                InvalidArgumentError, lambda log: log.checkpoint(name, "app", shard.index, seq)
            )
            return
        self.host.run(lambda log: log.checkpoint(name, "app", shard.index, seq))
        stream.checkpoints[("app", shard.index)] = offset

    # -- reads ---------------------------------------------------------------------------

    @rule(
        name=st.sampled_from(NAMES),
        choice=st.integers(0, 50),
        position=positions,
        delta=st.integers(-3, 3),
        max_records=st.integers(1, 20),
        small=st.booleans(),
    )
    def read(
        self, name: str, choice: int, position: str, delta: int, max_records: int, small: bool
    ) -> None:
        """Resolve a position, then read on from it, as a consumer would, to the shard's end."""
        stream = self.streams.get(name)
        if stream is None:
            return
        with_data = sorted(i for i, s in stream.shards.items() if s.batches)
        shard = stream.shards[with_data[choice % len(with_data)]] if with_data else None
        shard = shard or self.pick_shard(stream, choice)
        stored = shard.stored()
        start: int | None
        kwargs: dict[str, Any] = {}
        if position == "TRIM_HORIZON":
            start = shard.horizon
        elif position == "LATEST":
            start = shard.next_offset
        elif position == "AT_TIMESTAMP":
            times = sorted({rec[0] for _, rec in stored}) or [self.clock.now]
            ts = times[choice % len(times)] + delta
            kwargs["timestamp_ms"] = ts
            start = next((o for o, rec in stored if rec[0] >= ts), shard.next_offset)
        else:
            target = max(0, shard.next_offset - 1 + delta)
            if stored and choice % 2:
                target = max(0, stored[choice % len(stored)][0] + delta)
            kwargs["sequence_number"] = encode(stream.incarnation, shard.index, target)
            wanted = target + (1 if position == "AFTER_SEQUENCE_NUMBER" else 0)
            start = None if wanted > shard.next_offset else max(wanted, shard.horizon)

        def resolve(log: Log) -> int:
            return log.resolve(name, shard.index, position, **kwargs)

        if start is None:
            with pytest.raises(InvalidArgumentError):
                self.host.read(resolve)
            return
        assert self.host.read(resolve) == start
        max_bytes = 1 if small else 1 << 20
        expected = [(o, rec) for o, rec in stored if o >= start]
        offset = start

        def read_on(log: Log) -> ReadResult:
            return log.read(name, shard.index, offset, max_records=max_records, max_bytes=max_bytes)

        for _ in range(len(expected) + 2):
            result = self.host.read(read_on)
            got = [(o, (arrival, key, data)) for o, arrival, key, data in result.records()]
            if small:  # progress, but no further than the end of the first batch touched
                assert bool(got) == bool(expected)
                assert len(got) <= max_records
                assert got == expected[: len(got)]
                if got:
                    first, recs = next(b for b in shard.batches if b[0] + len(b[1]) > got[0][0])
                    assert got[-1][0] < first + len(recs)
            else:
                assert got == expected[:max_records]
            expected = expected[len(got) :]
            assert result.next_offset == max(offset, shard.horizon) + len(got)
            offset = result.next_offset
            at_end = shard.ending is not None and offset > shard.ending
            assert result.shard_end == at_end
            if at_end:
                assert sorted(s.index for s in result.child_shards) == stream.children_of(
                    shard.index
                )
            else:
                assert result.child_shards == ()
            if not got:
                break
        assert expected == []

    # -- restarts --------------------------------------------------------------------------

    @rule()
    def reopen(self) -> None:
        self.host.reopen()

    # -- what must hold after every step ------------------------------------------------------

    @invariant()
    def log_matches_model(self) -> None:
        self.host.read(self._check)

    def _check(self, log: Log) -> None:
        assert log.list_streams() == sorted(self.streams)
        for name, stream in self.streams.items():
            desc = log.describe(name)
            assert desc.incarnation == stream.incarnation
            assert {s.index for s in desc.shards} == set(stream.shards)
            for shard in desc.shards:
                model = stream.shards[shard.index]
                assert shard.hash_range == model.hash_range
                assert set(shard.parents) == set(model.parents)
                assert shard.ending_offset == model.ending
                tail = log.tail(name, shard.index)
                assert (tail.horizon, tail.next_offset, tail.last_arrival_ms) == (
                    model.horizon,
                    model.next_offset,
                    model.last_arrival,
                )
                rows = list(log.read(name, shard.index, 0, max_records=10_000).records())
                assert [(o, (a, k, d)) for o, a, k, d in rows] == model.stored()
                for app in APPS:
                    cp = log.get_checkpoint(name, app, shard.index)
                    if (app, shard.index) in stream.checkpoints:
                        assert cp is not None
                        assert cp.offset == stream.checkpoints[(app, shard.index)]
                        assert cp.shard_end == (cp.offset is None)
                    else:
                        assert cp is None
            # The open shards tile the hash space: no gap, no overlap.
            tiles = sorted((s.hash_range for s in desc.open_shards), key=lambda r: r.start)
            assert tiles[0].start == 0 and tiles[-1].end == MAX_HASH_KEY
            assert all(a.end + 1 == b.start for a, b in itertools.pairwise(tiles))


LogMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLogAgainstModel = LogMachine.TestCase
