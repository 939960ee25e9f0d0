"""Scenario ``recovery``: a broker holding millions of records, SIGKILLed under load, restarted.

A broker server runs in its own process (``shardline serve`` on a free
loopback port over a fresh data directory, default settings: every
acknowledgement follows a durable commit). The parent fills a stream of
``SHARDS`` shards with ``records`` records of ``RECORD_BYTES`` (10 million by
default) through PutRecords of ``RECORDS_PER_REQUEST``, ``FILL_CONCURRENCY``
in flight, as fast as the broker takes them. Then, per round:

1. **Load**: ``PRODUCERS`` producer processes write PutRecords of 500 records
   closed-loop (``PRODUCER_CONCURRENCY`` requests in flight each, on one
   HTTP/2 connection each) and keep every acknowledged record in memory: its
   shard, its offset (from the sequence number) and the record's id.
2. **Kill**: after ``load`` seconds the broker gets SIGKILL (``Popen.kill``)
   while requests are in flight; the time is noted.
3. **Restart**: at once ``shardline serve`` starts again on the same data
   directory and port. Measured from the restart's spawn: the time until its
   socket accepts a connection (``restart_to_listening_s``) and until it
   answers a ``ListShards`` of the stream (``restart_to_serving_s``, polled
   every 2 ms); ``kill_to_serving_s`` runs from the kill instead. The
   producers retry every ``RETRY_S`` meanwhile (new records, never a resend,
   so that every id is written at most once) and go on writing for
   ``AFTER_RESTART_S`` once each has an acknowledgement from the restarted
   broker: the restarted broker takes writes, not only reads.
4. **Verify**: the producers stop and hand over their acknowledged records
   (a ``.npz`` file each); the parent reads every shard from TRIM_HORIZON
   (compact GetRecords pages, ``Client.read_pages``) and checks that (a) each
   shard holds at least as many records as were acknowledged to it, (b) every
   acknowledged record of the producers is at its acknowledged (shard,
   sequence number) with the same data, and every record of the fill is
   there, (c) sequence numbers strictly increase within each shard. ``lost``
   counts the acknowledged records missing or different (it must be 0).
   Records that were sent but not acknowledged (in flight at the kill) may or
   may not be there: ``unacked_present`` says how many were.

Every record's data carries its identity, so the check needs no copy of the
data: bytes 0-7 are a unique id (the writer in the top bits: 0 for the fill,
then one writer per producer per round), bytes 8-15 a digest of the id, and
the rest a fixed filler. Pages are checked with numpy, a page at a time.

Rounds repeat steps 1-4 on the same data (the log grows by each round's
writes), and each round's verification covers everything written so far. The
goal takes the **median** restart-to-serving time over the rounds: one round
on a shared two-core machine can be slowed by whatever else runs; losses are
summed over the rounds (any loss fails the goal).

The producers' CPU competes with the restarting broker, as it would on a
real host; ``fill_records_per_s`` is the fill's rate (the broker's ingest with
a single client process), reported for information.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import trio

from broker.client import Client
from broker.errors import ShardlineError
from broker.model import shard_id
from broker.protocol.codec import encode_body

from .. import children as procs
from ..broker_process import HOST, free_port
from ..scenario import Column, Goal, Options, Row, Scenario, ScenarioResult, scratch_directory

STREAM = "recovery"
SHARDS = 4
RECORD_BYTES = 100
RECORDS_PER_REQUEST = 500
KEY_CHARS = 16
#: Distinct sets of partition keys per writer (each request uses one).
KEY_SETS = 8
RECORDS = 10_000_000
QUICK_RECORDS = 200_000
#: The fill is split into steps of about this many records, for the progress bar.
FILL_STEP = 250_000
FILL_CONCURRENCY = 8
PRODUCERS = 2
PRODUCER_CONCURRENCY = 4
ROUNDS = 3
QUICK_ROUNDS = 1
#: Seconds of producer load before the kill.
LOAD_S = 1.5
QUICK_LOAD_S = 1.0
#: Seconds the producers go on writing once each has an answer from the restarted broker.
AFTER_RESTART_S = 0.5
#: A producer's pause before it tries again after a failed request.
RETRY_S = 0.02
#: How often the parent asks whether the restarted broker serves.
POLL_S = 0.002
SERVE_TIMEOUT_S = 60.0
RESUME_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 10.0

GOAL_SERVING_S = 1.0

#: The top bits of a record id say who wrote it: 0 the fill, then one writer per producer.
WRITER_SHIFT = 40
OFFSET_MASK = (1 << 64) - 1
INDEX_MASK = (1 << 32) - 1
_DIGEST_FACTOR = np.uint64(0x9E3779B97F4A7C15)
_DIGEST_SALT = np.uint64(0x5A17_1E5E_ED5A_17ED)
FILLER = np.frombuffer((b"shardline recovery check " * 4)[: RECORD_BYTES - 16], dtype=np.uint8)

IdArray = npt.NDArray[np.uint64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


# -- records that carry their identity ------------------------------------------


def record_ids(writer: int, first: int, count: int) -> IdArray:
    """Ids ``first .. first + count - 1`` of ``writer``."""
    start = (writer << WRITER_SHIFT) + first
    return np.arange(start, start + count, dtype=np.uint64)


def writers(ids: IdArray) -> IdArray:
    return ids >> np.uint64(WRITER_SHIFT)


def _digest(ids: IdArray) -> IdArray:
    return (ids * _DIGEST_FACTOR) ^ _DIGEST_SALT  # wraps modulo 2**64


def record_rows(ids: IdArray) -> npt.NDArray[np.uint8]:
    """The data of the records ``ids``, one row of ``RECORD_BYTES`` each."""
    rows = np.empty((len(ids), RECORD_BYTES), dtype=np.uint8)
    rows[:, :8] = ids.astype("<u8").view(np.uint8).reshape(-1, 8)
    rows[:, 8:16] = _digest(ids).astype("<u8").view(np.uint8).reshape(-1, 8)
    rows[:, 16:] = FILLER
    return rows


def check_rows(rows: npt.NDArray[np.uint8]) -> tuple[IdArray, BoolArray]:
    """The ids of stored data rows, and whether each row is exactly what its id's record was."""
    ids = np.ascontiguousarray(rows[:, :8]).view("<u8").ravel().astype(np.uint64)
    digests = np.ascontiguousarray(rows[:, 8:16]).view("<u8").ravel().astype(np.uint64)
    valid = (digests == _digest(ids)) & (rows[:, 16:] == FILLER).all(axis=1)
    return ids, valid


def partition_keys(seed: int) -> list[str]:
    """``RECORDS_PER_REQUEST`` distinct partition keys of ``KEY_CHARS`` hex digits."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 1 << 63, size=RECORDS_PER_REQUEST, dtype=np.int64)
    return [f"{int(v):0{KEY_CHARS}x}"[-KEY_CHARS:] for v in values]


class BodyTemplate:
    """A PutRecords body with fixed partition keys, its records' data written in per request.

    The body is encoded once; each record has the same size (the keys have
    the same length), so each request only writes the data rows into a copy
    with numpy: the producers are load generators, and the less of the
    machine they take the less they slow the broker they measure.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        records = [{"Data": bytes(RECORD_BYTES), "PartitionKey": key} for key in keys]
        body = encode_body({"StreamName": STREAM, "Records": records})
        one = len(encode_body({"Data": bytes(RECORD_BYTES), "PartitionKey": keys[0]}))
        self.count = len(keys)
        self.record_size = one
        self.start = len(body) - one * len(keys)
        # A map of two, "Data", then bin 8 (type byte, length byte) and the data itself.
        head = b"\x82\xa4Data\xc4" + bytes([RECORD_BYTES])
        self.data_at = len(head)
        first = body[self.start : self.start + self.data_at]
        if first != head:
            raise AssertionError(f"unexpected record layout: {first!r}")
        self.template = np.frombuffer(body, dtype=np.uint8).copy()

    def body(self, ids: IdArray) -> bytes:
        """The body with the records ``ids`` (as many as the template has keys)."""
        out = self.template.copy()
        table = out[self.start :].reshape(self.count, self.record_size)
        table[:, self.data_at : self.data_at + RECORD_BYTES] = record_rows(ids)
        return out.tobytes()


def templates(writer: int) -> list[BodyTemplate]:
    return [BodyTemplate(partition_keys(writer * KEY_SETS + k)) for k in range(KEY_SETS)]


@dataclass(slots=True)
class AckedRecords:
    """Acknowledged records: shard index, offset in the shard and id, one entry each."""

    shards: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    offsets: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    ids: IdArray = field(default_factory=lambda: np.zeros(0, np.uint64))

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def join(cls, parts: Sequence[AckedRecords]) -> AckedRecords:
        if not parts:
            return cls()
        return cls(
            np.concatenate([p.shards for p in parts]),
            np.concatenate([p.offsets for p in parts]),
            np.concatenate([p.ids for p in parts]),
        )

    def save(self, path: str) -> None:
        np.savez(path, shards=self.shards, offsets=self.offsets, ids=self.ids)

    @classmethod
    def load(cls, path: str) -> AckedRecords:
        with np.load(path) as saved:
            return cls(saved["shards"], saved["offsets"], saved["ids"])


def acknowledged(answer: dict[str, Any], ids: IdArray) -> AckedRecords:
    """The records of a PutRecords answer that were acknowledged (a failed entry is not)."""
    entries = answer["Records"]
    ok = np.fromiter(("SequenceNumber" in e for e in entries), dtype=np.bool_, count=len(entries))
    done = [e for e in entries if "SequenceNumber" in e]
    shards = np.fromiter((int(e["ShardId"][8:]) for e in done), dtype=np.int64, count=len(done))
    offsets = np.fromiter(
        (int(e["SequenceNumber"]) & OFFSET_MASK for e in done), dtype=np.int64, count=len(done)
    )
    return AckedRecords(shards, offsets, ids[ok])


# -- a producer (a child process) -----------------------------------------------


@dataclass(slots=True)
class _Producing:
    writer: int
    next_counter: int = 0
    acked: list[AckedRecords] = field(default_factory=list)
    during_load: int = 0
    after_restart: int = 0
    #: Records of requests sent before the first failure that got no answer (lost in flight).
    in_flight_at_kill: int = 0
    #: Records the broker answered as failed (FailedRecordCount).
    refused: int = 0
    failed_requests: int = 0
    first_failure_ns: int = 0
    first_ack_after_ns: int = 0

    def next_ids(self) -> IdArray:
        ids = record_ids(self.writer, self.next_counter, RECORDS_PER_REQUEST)
        self.next_counter += RECORDS_PER_REQUEST
        return ids


async def produce(endpoint: str, writer: int, concurrency: int, out: str) -> dict[str, Any]:
    """Write closed-loop until a line (or EOF) on stdin; save the acknowledged records to ``out``.

    Prints ``ready`` after its first acknowledgement, and ``resumed`` after
    its first acknowledgement of a request sent after a failure (a request
    sent after a failure went to the restarted broker).
    """
    bodies = templates(writer)
    state = _Producing(writer)
    stop = trio.Event()
    ready = trio.Event()

    async def loop(k: int) -> None:
        n = k
        while not stop.is_set():
            ids = state.next_ids()
            body = bodies[n % len(bodies)].body(ids)
            n += 1
            after = state.first_failure_ns != 0
            try:
                answer = await client.call_encoded("PutRecords", body)
            except ShardlineError:
                if not after:
                    state.in_flight_at_kill += len(ids)
                state.failed_requests += 1
                if not state.first_failure_ns:
                    state.first_failure_ns = time.monotonic_ns()
                await trio.sleep(RETRY_S)
                continue
            acked = acknowledged(answer, ids)
            state.acked.append(acked)
            state.refused += len(ids) - len(acked)
            if after:
                state.after_restart += len(acked)
                if not state.first_ack_after_ns:
                    state.first_ack_after_ns = time.monotonic_ns()
                    print("resumed", flush=True)
            else:
                state.during_load += len(acked)
                if not ready.is_set():
                    ready.set()
                    print("ready", flush=True)

    async def wait_for_stop() -> None:
        await trio.to_thread.run_sync(sys.stdin.readline)
        stop.set()

    async with Client(endpoint, timeout=REQUEST_TIMEOUT_S) as client, trio.open_nursery() as n:
        n.start_soon(wait_for_stop)
        for k in range(concurrency):
            n.start_soon(loop, k)
    AckedRecords.join(state.acked).save(out)
    return {
        "writer": writer,
        "acked_during_load": state.during_load,
        "acked_after_restart": state.after_restart,
        "in_flight_at_kill": state.in_flight_at_kill,
        "refused": state.refused,
        "failed_requests": state.failed_requests,
        "first_failure_ns": state.first_failure_ns,
        "first_ack_after_ns": state.first_ack_after_ns,
    }


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="recovery producer")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--writer", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=PRODUCER_CONCURRENCY)
    parser.add_argument("--out", required=True, help="where the acknowledged records go (.npz)")
    args = parser.parse_args(argv)
    out = trio.run(produce, args.endpoint, args.writer, args.concurrency, args.out)
    print(json.dumps(out), flush=True)


# -- the broker, killed and restarted -------------------------------------------


class _Broker:
    """``shardline serve`` over one data directory and port, started again after each kill."""

    def __init__(self, data: str) -> None:
        self.data = data
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def spawn(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "broker.cli", "serve", "--data", self.data]
        command += ["--host", HOST, "--port", str(self.port)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        return self.process

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True, slots=True)
class StartTimes:
    """Seconds from the spawn until the socket accepts, and until ListShards is answered."""

    listening: float
    serving: float


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.1):
        return True
    return False


async def _wait_serving(broker: _Broker, spawned: float, filled: bool) -> StartTimes:
    process = broker.process
    assert process is not None
    deadline = spawned + SERVE_TIMEOUT_S
    while not _accepts(broker.port):
        if process.poll() is not None:
            raise RuntimeError(f"the broker exited with status {process.returncode} at start")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the broker did not listen within {SERVE_TIMEOUT_S} s")
        await trio.sleep(POLL_S)
    listening = time.perf_counter() - spawned
    async with Client(broker.endpoint, timeout=REQUEST_TIMEOUT_S) as client:
        while True:
            try:
                if filled:
                    await client.list_shards(STREAM)
                else:
                    await client.list_streams()
                break
            except ShardlineError as exc:
                if not exc.retriable or time.perf_counter() > deadline:
                    raise
            await trio.sleep(POLL_S)
    return StartTimes(listening, time.perf_counter() - spawned)


def start(broker: _Broker, *, filled: bool = True) -> StartTimes:
    """Spawn the broker and wait until it answers (ListShards of the stream once it exists)."""
    spawned = time.perf_counter()
    broker.spawn()
    return trio.run(_wait_serving, broker, spawned, filled)


# -- the fill -------------------------------------------------------------------


async def _fill(endpoint: str, first: int, count: int, create: bool) -> Counter[int]:
    """Records ``first .. first + count - 1`` of the fill (whole requests); per shard, how many."""
    bodies = templates(0)
    per_shard: Counter[int] = Counter()
    pending = list(range(first // RECORDS_PER_REQUEST, (first + count) // RECORDS_PER_REQUEST))
    pending.reverse()
    async with Client(endpoint, timeout=60.0) as client:
        if create:
            await client.create_stream(STREAM, SHARDS)

        async def put() -> None:
            while pending:
                n = pending.pop()
                ids = record_ids(0, n * RECORDS_PER_REQUEST, RECORDS_PER_REQUEST)
                answer = await client.call_encoded("PutRecords", bodies[n % len(bodies)].body(ids))
                if answer.get("FailedRecordCount"):
                    raise RuntimeError(f"the fill's PutRecords failed: {answer['Records'][:3]}")
                per_shard.update(int(e["ShardId"][8:]) for e in answer["Records"])

        async with trio.open_nursery() as nursery:
            for _ in range(FILL_CONCURRENCY):
                nursery.start_soon(put)
    return per_shard


def fill(options: Options, endpoint: str, records: int) -> tuple[Counter[int], float]:
    """Fill the stream with ``records`` records; per shard counts and records/s."""
    requests = records // RECORDS_PER_REQUEST
    steps = max(1, min(requests, round(records / FILL_STEP)))
    bounds = [requests * i // steps * RECORDS_PER_REQUEST for i in range(steps + 1)]
    per_shard: Counter[int] = Counter()
    began = time.perf_counter()
    for i in options.steps(range(steps), "fill"):
        lo, hi = bounds[i], bounds[i + 1]
        per_shard += trio.run(_fill, endpoint, lo, hi - lo, i == 0)
    return per_shard, records / (time.perf_counter() - began)


# -- the verification -----------------------------------------------------------


@dataclass(slots=True)
class StoredShard:
    """What one shard holds, in log order: offsets, record ids, and which records are intact."""

    offsets: IntArray
    ids: IdArray
    valid: BoolArray


def page_arrays(batches: list[dict[str, Any]], index: int) -> StoredShard:
    """One compact GetRecords page's records as arrays (``index``: the shard read)."""
    firsts: list[int] = []
    counts: list[int] = []
    datas: list[bytes] = []
    for batch in batches:
        first = int(batch["FirstSequenceNumber"])
        if (first >> 64) & INDEX_MASK != index:
            raise RuntimeError(f"shard {index} answered with a batch of another: {first}")
        records = batch["Records"]
        firsts.append(first & OFFSET_MASK)
        counts.append(len(records))
        datas += [r[2] for r in records]
    total = sum(counts)
    starts = np.cumsum([0, *counts[:-1]])
    offsets = np.arange(total, dtype=np.int64) + np.repeat(
        np.asarray(firsts, dtype=np.int64) - starts, counts
    )
    blob = b"".join(datas)
    if len(blob) == total * RECORD_BYTES:
        rows = np.frombuffer(blob, dtype=np.uint8).reshape(total, RECORD_BYTES)
    else:  # a record of another size: a zero row, which no id's record is
        rows = np.zeros((total, RECORD_BYTES), dtype=np.uint8)
        for i, data in enumerate(datas):
            if len(data) == RECORD_BYTES:
                rows[i] = np.frombuffer(data, dtype=np.uint8)
    ids, valid = check_rows(rows)
    return StoredShard(offsets, ids, valid)


async def _read_shard(client: Client, index: int) -> StoredShard:
    it = await client.get_shard_iterator(STREAM, shard_id(index), "TRIM_HORIZON")
    parts: list[StoredShard] = []
    async with client.read_pages(it.shard_iterator, idle_wait=0.0) as pages:
        async for page in pages.wire_maps():
            batches = page.get("Batches") or []
            if not batches:  # caught up: nobody writes any more
                break
            parts.append(page_arrays(batches, index))
    if not parts:
        return StoredShard(np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0, np.bool_))
    return StoredShard(
        np.concatenate([p.offsets for p in parts]),
        np.concatenate([p.ids for p in parts]),
        np.concatenate([p.valid for p in parts]),
    )


async def read_all(endpoint: str, shards: int) -> dict[int, StoredShard]:
    """Every record of every shard, from TRIM_HORIZON to the end (the shards read concurrently)."""
    stored: dict[int, StoredShard] = {}
    async with Client(endpoint, timeout=120.0) as client:

        async def one(index: int) -> None:
            stored[index] = await _read_shard(client, index)

        async with trio.open_nursery() as nursery:
            for index in range(shards):
                nursery.start_soon(one, index)
    return stored


def _distinct(ids: IdArray) -> IdArray:
    """The distinct values of ``ids``, sorted (a sort and a mask: np.unique hashes, slowly)."""
    ordered = np.sort(ids)
    keep = np.ones(len(ordered), dtype=np.bool_)
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def audit(
    stored: dict[int, StoredShard],
    acked: AckedRecords,
    fill_records: int,
    fill_per_shard: Counter[int],
) -> dict[str, int]:
    """Check what the shards hold against what was acknowledged (see the module docstring).

    ``lost``: acknowledged records of the producers not at their (shard,
    offset) with their data, plus records of the fill (ids ``0 ..
    fill_records - 1`` of writer 0, all acknowledged) found nowhere intact.
    """
    lost_acked = 0
    out_of_order = 0
    short_shards = 0
    for index, shard in stored.items():
        offsets, ids, valid = shard.offsets, shard.ids, shard.valid
        steps = np.diff(offsets)
        bad_steps = int(np.count_nonzero(steps <= 0))
        out_of_order += bad_steps
        if bad_steps:  # still find each record by its offset
            order = np.argsort(offsets, kind="stable")
            offsets, ids, valid = offsets[order], ids[order], valid[order]
        mine = acked.shards == index
        if len(offsets) < fill_per_shard[index] + int(np.count_nonzero(mine)):
            short_shards += 1
        want_offsets, want_ids = acked.offsets[mine], acked.ids[mine]
        if not len(offsets):
            lost_acked += len(want_ids)
            continue
        at = np.minimum(np.searchsorted(offsets, want_offsets), len(offsets) - 1)
        found = (offsets[at] == want_offsets) & (ids[at] == want_ids) & valid[at]
        lost_acked += int(np.count_nonzero(~found))
    lost_acked += int(np.count_nonzero(~np.isin(acked.shards, list(stored))))
    all_ids = np.concatenate([s.ids[s.valid] for s in stored.values()] or [np.zeros(0, np.uint64)])
    distinct = _distinct(all_ids)
    by_fill = writers(distinct) == 0
    fill_found = int(np.count_nonzero(distinct[by_fill] < np.uint64(fill_records)))
    produced = distinct[~by_fill]
    verified = sum(len(s.ids) for s in stored.values())
    return {
        "lost": lost_acked + (fill_records - fill_found),
        "lost_acked": lost_acked,
        "lost_fill": fill_records - fill_found,
        "out_of_order": out_of_order,
        "short_shards": short_shards,
        "unacked_present": int(np.count_nonzero(~np.isin(produced, acked.ids))),
        "corrupt": verified - len(all_ids),
        "duplicates": len(all_ids) - len(distinct),
        "verified_records": verified,
    }


# -- the scenario (the parent) --------------------------------------------------


def _producer(endpoint: str, writer: int, out: str) -> subprocess.Popen[bytes]:
    return procs.spawn("bench.scenarios.recovery", endpoint=endpoint, writer=writer, out=out)


def _expect_line(process: subprocess.Popen[bytes], expected: str, timeout: float) -> None:
    """Wait (bounded) for the line ``expected`` on the child's stdout, read unbuffered."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"a producer did not say {expected!r} within {timeout} s")
        readable, _, _ = select.select([fd], [], [], left)
        if readable:
            byte = os.read(fd, 1)
            if not byte:
                _, err = process.communicate(timeout=10)
                raise RuntimeError(f"a producer exited before {expected!r}: {err.decode()[-2000:]}")
            line += byte
    if line.decode().strip() != expected:
        raise RuntimeError(f"a producer said {line!r}, not {expected!r}")


def _finish(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    with contextlib.suppress(BrokenPipeError):
        procs.tell(process, "stop")
    return procs.last_json(process, REQUEST_TIMEOUT_S + 60, "a producer")


def data_mb(data: str) -> float:
    """Disk space of the data directory's files (allocated blocks, not the sparse map size)."""
    total = 0
    for entry in os.scandir(data):
        if entry.is_file():
            total += entry.stat().st_blocks * 512
    return total / 1e6


@dataclass(slots=True)
class _Run:
    """What the rounds share: the broker, the fill's counts, every acknowledged record so far."""

    broker: _Broker
    tmp: str
    records: int
    fill_per_shard: Counter[int]
    fill_records_per_s: float
    load_s: float
    acked: list[AckedRecords] = field(default_factory=list)


def _round(run: _Run, number: int) -> Row:
    broker = run.broker
    outs = [os.path.join(run.tmp, f"acked-{number}-{p}.npz") for p in range(PRODUCERS)]
    with procs.reaped() as producers:
        for p in range(PRODUCERS):
            writer = 1 + number * PRODUCERS + p
            producers.append(_producer(broker.endpoint, writer, outs[p]))
        for process in producers:
            _expect_line(process, "ready", SERVE_TIMEOUT_S)
        time.sleep(run.load_s)  # the load's length, not a wait for a condition
        killed = time.perf_counter()
        killed_ns = time.monotonic_ns()
        broker.kill()
        times = start(broker)
        serving = time.perf_counter()
        for process in producers:
            _expect_line(process, "resumed", RESUME_TIMEOUT_S)
        time.sleep(AFTER_RESTART_S)  # writes to the restarted broker, for a while
        reports = [_finish(process) for process in producers]
    run.acked += [AckedRecords.load(out) for out in outs]
    began = time.perf_counter()
    stored = trio.run(read_all, broker.endpoint, SHARDS)
    checked = audit(stored, AckedRecords.join(run.acked), run.records, run.fill_per_shard)
    verify_s = time.perf_counter() - began
    first_ack = min(r["first_ack_after_ns"] for r in reports)
    return {
        "round": number + 1,
        "records": run.records,
        "shards": SHARDS,
        "fill_records_per_s": run.fill_records_per_s,
        "restart_to_listening_s": times.listening,
        "restart_to_serving_s": times.serving,
        "kill_to_serving_s": serving - killed,
        "kill_to_first_ack_s": (first_ack - killed_ns) / 1e9,
        "acked_during_load": sum(r["acked_during_load"] for r in reports),
        "acked_after_restart": sum(r["acked_after_restart"] for r in reports),
        "in_flight_at_kill": sum(r["in_flight_at_kill"] for r in reports),
        "refused": sum(r["refused"] for r in reports),
        **checked,
        "verify_s": verify_s,
        "data_mb": data_mb(broker.data),
    }


COLUMNS = (
    Column("round", "round"),
    Column("records", "records", ",.0f"),
    Column("restart_to_listening_s", "to listening s", ".3f"),
    Column("restart_to_serving_s", "to serving s", ".3f"),
    Column("kill_to_serving_s", "kill to serving s", ".3f"),
    Column("kill_to_first_ack_s", "kill to 1st ack s", ".3f"),
    Column("acked_during_load", "acked (load)", ",.0f"),
    Column("acked_after_restart", "acked (after)", ",.0f"),
    Column("unacked_present", "unacked present", ",.0f"),
    Column("lost", "lost"),
    Column("out_of_order", "out of order"),
    Column("verified_records", "verified", ",.0f"),
    Column("verify_s", "verify s", ".1f"),
    Column("data_mb", "data MB", ",.0f"),
)


def run(options: Options) -> ScenarioResult:
    records = options.records or (QUICK_RECORDS if options.quick else RECORDS)
    records = -(-records // RECORDS_PER_REQUEST) * RECORDS_PER_REQUEST
    rounds = options.rounds or (QUICK_ROUNDS if options.quick else ROUNDS)
    load_s = options.duration or (QUICK_LOAD_S if options.quick else LOAD_S)
    result = ScenarioResult(
        parameters={
            "records": records,
            "shards": SHARDS,
            "record_bytes": RECORD_BYTES,
            "records_per_request": RECORDS_PER_REQUEST,
            "rounds": rounds,
            "producers": PRODUCERS,
            "producer_concurrency": PRODUCER_CONCURRENCY,
            "load_s": load_s,
            "after_restart_s": AFTER_RESTART_S,
            "server": "shardline serve in its own process, default settings (durable commits)",
            "kill": "SIGKILL while the producers write; restarted at once, same data and port",
            "serving": "from the restart's spawn to the first answered ListShards (polled 2 ms)",
            "verification": "every shard read from TRIM_HORIZON after each round (all rounds)",
        },
        columns=COLUMNS,
    )
    with scratch_directory(options, "recovery") as tmp, options.section("recovery"):
        broker = _Broker(os.path.join(tmp, "data"))
        try:
            start(broker, filled=False)
            per_shard, rate = fill(options, broker.endpoint, records)
            shared = _Run(broker, tmp, records, per_shard, rate, load_s)
            for number in options.steps(range(rounds), "kill/restart rounds"):
                result.rows.append(_round(shared, number))
        finally:
            broker.stop()
    serving = statistics.median(row["restart_to_serving_s"] for row in result.rows)
    lost = sum(row["lost"] for row in result.rows)
    result.goals = [
        Goal(
            "serving again <= 1 s after a restart from SIGKILL (median of the rounds)",
            GOAL_SERVING_S,
            serving,
            at_most=True,
        ),
        Goal("acknowledged records lost after SIGKILL (all rounds)", 0, lost, at_most=True),
    ]
    result.notes.append(
        "to serving: from the restarted process's spawn to its first ListShards answer; "
        "kill to serving: from the SIGKILL; kill to 1st ack: to the first PutRecords a "
        "producer got acknowledged by the restarted broker"
    )
    result.notes.append(
        "lost: acknowledged records missing or changed (producers' at their sequence numbers, "
        "the fill's anywhere); unacked present: records in flight at a kill, never "
        "acknowledged, that were stored anyway (allowed; counted over all rounds so far)"
    )
    return result


SCENARIO = Scenario(
    "recovery",
    "a broker with 10M records SIGKILLed under load: time to serve again, nothing acked lost",
    run,
    repeats=1,  # kill/restart rounds inside, the median over them
)
