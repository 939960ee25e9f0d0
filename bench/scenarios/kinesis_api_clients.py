"""The load of ``kinesis-api``: boto3 threads putting records, then reading them all back.

Runs as a child process of the scenario (``child_main``), against any
endpoint that speaks Kinesis' JSON wire, so that shardline, the emulators and
the null endpoint get exactly the same client. What a Python user would write:

1. **Setup**: ``threads`` boto3 clients, each from its own ``boto3.Session``
   (clients are made in one thread: sessions are not thread-safe to create),
   ``max_pool_connections`` 1 (one connection per thread), retries off
   (``max_attempts`` 0: a throttled or failed call counts as failed, not
   retried behind the measurement's back), dummy credentials, ``us-east-1``.
   ``CreateStream`` of ``shards`` shards, then ``DescribeStreamSummary``
   until ACTIVE. ``DISTINCT_REQUESTS`` lists of ``RECORDS_PER_REQUEST``
   records of ``RECORD_BYTES`` random bytes under distinct random partition
   keys are made before timing. The child says ``ready``.
2. **Put**: each thread loops ``put_records(StreamName, Records)`` over the
   lists (each thread from its own offset). After ``warmup`` seconds the
   child says ``window`` and counts; after ``duration`` more it says
   ``closed``, and the threads stop after their call in flight. Records/s =
   records acknowledged by the responses that arrived in the window (each
   response's ``FailedRecordCount`` subtracted) / the window's seconds; every
   acknowledged record, warm-up and tail included, counts for the read-back.
3. **Get**: the child says ``reading``; the same threads take the shards
   (``ListShards``) round-robin and read each from ``TRIM_HORIZON`` with
   ``get_records(Limit=10000)`` until a page is empty with
   ``MillisBehindLatest`` 0 (or the iterator ends). Records/s = records read /
   the phase's wall time, then ``read``.
4. **Verify**: every record acknowledged, warm-up included, must come back
   exactly once: the count, and a digest, the sum modulo 2**64 of Python's
   ``hash((partition key, data))`` over the records (SipHash with this
   process's random key: put and get run in the same process, and the sum
   does not depend on the order shards come back in). Counted on the put
   side from each acknowledged response (all of a request's records, or
   those with a ``SequenceNumber`` when some failed), on the get side per
   record as it is read; the hashing (about 0.1 us a record) is in the read
   time, the same for every system.

Its last line is a JSON object (``run_child``'s contract): the figures, the
client process's CPU per second of each phase (all threads: 1.0 is one core,
and boto3 under the GIL cannot use much more), and ``verified``.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RECORDS_PER_REQUEST = 500
RECORD_BYTES = 100
DISTINCT_REQUESTS = 64
THREADS = 4
SHARDS = 4
READ_LIMIT = 10_000
#: How long the stream may take to become ACTIVE, and the read-back to finish.
ACTIVE_TIMEOUT_S = 60.0
READ_TIMEOUT_S = 600.0
POLL_S = 0.05
MASK = 2**64 - 1
REGION = "us-east-1"

Records = list[dict[str, Any]]


def say(line: str) -> None:
    print(line, flush=True)


def digest(key: str, data: bytes) -> int:
    return hash((key, data)) & MASK


def requests(count: int, seed: int = 5) -> list[tuple[Records, int]]:
    """``count`` PutRecords record lists of fresh random records and keys, with their digests."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        records: Records = [
            {
                "Data": rng.randbytes(RECORD_BYTES),
                "PartitionKey": f"k{n}-{i}-{rng.getrandbits(40):x}",
            }
            for i in range(RECORDS_PER_REQUEST)
        ]
        total = sum(digest(r["PartitionKey"], r["Data"]) for r in records) & MASK
        out.append((records, total))
    return out


def client(endpoint: str) -> Any:
    """A boto3 Kinesis client of its own session, one connection, no retries."""
    # Imported here: the scenario's controller imports this module for its constants.
    import boto3  # type: ignore[import-untyped]
    import botocore.config  # type: ignore[import-untyped]

    session = boto3.session.Session(
        aws_access_key_id="AKIDSHARDLINEBENCH",
        aws_secret_access_key="shardline-bench-secret",
        region_name=REGION,
    )
    config = botocore.config.Config(
        max_pool_connections=1,
        retries={"max_attempts": 0},
        connect_timeout=10,
        read_timeout=120,
    )
    return session.client("kinesis", endpoint_url=endpoint, config=config)


def wait_active(kinesis: Any, stream: str) -> None:
    deadline = time.monotonic() + ACTIVE_TIMEOUT_S
    while True:
        summary = kinesis.describe_stream_summary(StreamName=stream)
        if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"stream {stream} not ACTIVE after {ACTIVE_TIMEOUT_S} s")
        time.sleep(POLL_S)


@dataclass(slots=True)
class Tally:
    """One thread's counts: all acknowledged (for the check) and those in the window."""

    records: int = 0
    digest: int = 0
    window_records: int = 0
    window_requests: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Window:
    measuring: bool = False
    stop: threading.Event = field(default_factory=threading.Event)


def acknowledged(records: Records, body_digest: int, response: dict[str, Any]) -> tuple[int, int]:
    """Records acknowledged by a PutRecords response and their digest."""
    entries = response["Records"]
    if len(entries) != len(records):
        raise RuntimeError(f"PutRecords answered {len(entries)} entries for {len(records)}")
    if response.get("FailedRecordCount", 0) == 0:
        return len(records), body_digest
    count = total = 0
    for record, entry in zip(records, entries, strict=True):
        if entry.get("SequenceNumber"):
            count += 1
            total += digest(record["PartitionKey"], record["Data"])
    return count, total & MASK


def put_loop(
    kinesis: Any,
    stream: str,
    bodies: list[tuple[Records, int]],
    offset: int,
    window: Window,
    tally: Tally,
) -> None:
    i = offset
    while not window.stop.is_set():
        records, body_digest = bodies[i % len(bodies)]
        i += 1
        try:
            response = kinesis.put_records(StreamName=stream, Records=records)
        except Exception as exc:  # a failed call counts as failed, the loop goes on
            tally.failed += len(records)
            if len(tally.errors) < 5:
                tally.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            continue
        count, total = acknowledged(records, body_digest, response)
        tally.records += count
        tally.digest = (tally.digest + total) & MASK
        tally.failed += len(records) - count
        if window.measuring:  # by the time of its answer, as ingest counts
            tally.window_records += count
            tally.window_requests += 1


def read_shards(
    kinesis: Any, stream: str, shards: list[str], tally: Tally, deadline: float
) -> None:
    for shard in shards:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            if time.monotonic() > deadline:
                raise RuntimeError(f"reading {shard} did not finish in {READ_TIMEOUT_S} s")
            page = kinesis.get_records(ShardIterator=iterator, Limit=READ_LIMIT)
            records = page["Records"]
            total = tally.digest
            for record in records:
                total += hash((record["PartitionKey"], record["Data"])) & MASK
            tally.digest = total & MASK
            tally.records += len(records)
            iterator = page.get("NextShardIterator")
            if not records and page.get("MillisBehindLatest", 0) == 0:
                break


def start_threads(targets: list[Callable[[], None]]) -> tuple[list[threading.Thread], list[str]]:
    """Each target in its own thread, started; the list the errors that end any go to."""
    errors: list[str] = []

    def guarded(target: Callable[[], None]) -> None:
        try:
            target()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:500])

    threads = [threading.Thread(target=guarded, args=(t,), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    return threads, errors


def join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join()


def run(args: argparse.Namespace) -> dict[str, Any]:
    bodies = requests(DISTINCT_REQUESTS)
    clients = [client(args.endpoint) for _ in range(args.threads)]
    clients[0].create_stream(StreamName=args.stream, ShardCount=args.shards)
    wait_active(clients[0], args.stream)
    say("ready")

    window = Window()
    puts = [Tally() for _ in clients]
    loops: list[Callable[[], None]] = [
        functools.partial(put_loop, c, args.stream, bodies, k * 7, window, t)
        for k, (c, t) in enumerate(zip(clients, puts, strict=True))
    ]
    putters, put_errors = start_threads(loops)
    time.sleep(args.warmup)
    cpu0, t0 = time.process_time(), time.perf_counter()
    window.measuring = True
    say("window")
    time.sleep(args.duration)
    window.measuring = False
    seconds = time.perf_counter() - t0
    put_cpu = time.process_time() - cpu0
    say("closed")
    window.stop.set()
    join(putters)

    shard_ids = [s["ShardId"] for s in clients[0].list_shards(StreamName=args.stream)["Shards"]]
    gets = [Tally() for _ in clients]
    deadline = time.monotonic() + READ_TIMEOUT_S
    say("reading")
    cpu1, t1 = time.process_time(), time.perf_counter()
    readers: list[Callable[[], None]] = [
        functools.partial(read_shards, c, args.stream, shard_ids[k :: len(clients)], t, deadline)
        for k, (c, t) in enumerate(zip(clients, gets, strict=True))
    ]
    getters, get_errors = start_threads(readers)
    join(getters)
    read_seconds = time.perf_counter() - t1
    get_cpu = time.process_time() - cpu1
    say("read")

    window_records = sum(t.window_records for t in puts)
    put_total = sum(t.records for t in puts)
    put_digest = sum(t.digest for t in puts) & MASK
    got_total = sum(t.records for t in gets)
    got_digest = sum(t.digest for t in gets) & MASK
    errors = put_errors + [e for t in puts for e in t.errors] + get_errors
    return {
        "seconds": seconds,
        "put_records_per_s": window_records / seconds,
        "put_requests_per_s": sum(t.window_requests for t in puts) / seconds,
        "records_put": put_total,
        "failed_records": sum(t.failed for t in puts),
        "client_cpu_put": put_cpu / seconds,
        "read_seconds": read_seconds,
        "get_records_per_s": got_total / read_seconds if read_seconds > 0 else None,
        "records_read": got_total,
        "client_cpu_get": get_cpu / read_seconds if read_seconds > 0 else None,
        "shards_read": len(shard_ids),
        "count_matches": got_total == put_total,
        "digest_matches": got_digest == put_digest,
        "errors": errors[:10],
    }


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="kinesis-api load")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--stream", default="kinesis-api")
    parser.add_argument("--shards", type=int, default=SHARDS)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    args = parser.parse_args(argv)
    out = run(args)
    print(json.dumps(out), flush=True)
