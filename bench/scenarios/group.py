"""Scenario ``group``: consumer groups draining a pre-filled stream, and failover after SIGKILL.

A broker server (its own process, default settings) holds a stream of
``SHARDS`` shards filled with ``RECORDS`` records of 100 B (random keys, so
every shard gets its share) before anything is timed.

1. **Drain**: for 1, 2 and 4 workers, a fresh group (``ConsumerGroup`` from
   ``TRIM_HORIZON``, each worker its own process) reads the whole stream,
   checkpointing every batch, as users do. The workers start together on a
   signal; the time runs from the signal until, for every shard, some worker
   has delivered its last record (each worker reports, every 0.1 s, the last
   sequence number it delivered per shard). Records/s = ``RECORDS`` over that
   time, so balancing (workers taking and stealing leases) is part of it.
   Records delivered more than once (a shard handed over after a steal) are
   reported as duplicates.
2. **Failover**: two workers of a fresh group (from ``LATEST``, the default
   lease duration of 10 s) read the stream while a producer writes a record
   to every shard every 50 ms. Once they hold 4 shards each and records flow,
   one is killed with SIGKILL. Failover time: from the kill until the
   survivor has delivered a record written after the kill from every shard
   the killed worker held. Goal (issue 5): within the lease duration + 1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import trio

from broker.client import Client, RecordsEvent
from consumers.group import DEFAULT_LEASE_DURATION_S, ConsumerGroup

from ..broker_process import broker_server
from ..scenario import Column, Goal, Options, Row, Scenario, ScenarioResult, scratch_directory
from ..workload import fill_stream

STREAM = "group"
SHARDS = 8
RECORD_BYTES = 100
RECORDS = 1_000_000
QUICK_RECORDS = 200_000
WORKERS = (1, 2, 4)
QUICK_WORKERS = (2,)
REPORT_S = 0.1
DRAIN_TIMEOUT_S = 300.0
FAILOVER_TIMEOUT_S = 120.0
TICK_S = 0.05


# -- a worker (a child process) ---------------------------------------------------


async def work(endpoint: str, group: str, position: str, lease_duration: float) -> None:
    """Read as one worker of ``group``; report progress as JSON lines until stdin closes."""
    print("ready", flush=True)
    await trio.to_thread.run_sync(sys.stdin.readline)  # "go"
    count = 0
    positions: dict[str, int] = {}
    async with (
        ConsumerGroup(
            endpoint,
            STREAM,
            group,
            starting_position=position,  # type: ignore[arg-type]
            lease_duration=lease_duration,
        ) as members,
        trio.open_nursery() as nursery,
    ):

        async def report() -> None:
            while True:
                line = {
                    "t": time.monotonic_ns(),
                    "count": count,
                    "positions": positions,
                    "shards": members.statistics().shards,
                }
                print(json.dumps(line), flush=True)
                await trio.sleep(REPORT_S)

        async def stop_on_eof() -> None:
            await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            nursery.cancel_scope.cancel()

        nursery.start_soon(report)
        nursery.start_soon(stop_on_eof)
        async for batch in members:
            event = batch.event
            if isinstance(event, RecordsEvent) and event.records:
                count += len(event.records)
                positions[batch.shard_id] = event.sequence_number(-1)
            await batch.checkpoint()


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="group worker")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--position", default="TRIM_HORIZON")
    parser.add_argument("--lease", type=float, default=DEFAULT_LEASE_DURATION_S)
    args = parser.parse_args(argv)
    trio.run(work, args.endpoint, args.group, args.position, args.lease)


# -- the parent -------------------------------------------------------------------


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    latest: dict[str, Any] = field(default_factory=dict)
    reports: list[dict[str, Any]] = field(default_factory=list)
    thread: threading.Thread | None = None

    def follow(self) -> None:
        def read() -> None:
            assert self.process.stdout is not None
            for raw in self.process.stdout:
                line = raw.decode().strip()
                if line.startswith("{"):
                    report = json.loads(line)
                    self.latest = report
                    self.reports.append(report)

        self.thread = threading.Thread(target=read, daemon=True)
        self.thread.start()


def _spawn(endpoint: str, group: str, position: str, lease: float) -> _Worker:
    code = "import sys; from bench.scenarios.group import child_main; child_main(sys.argv[1:])"
    args = ["--endpoint", endpoint, "--group", group, "--position", position]
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args, "--lease", str(lease)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if line != "ready":
        process.kill()
        raise RuntimeError(f"a group worker did not start: {line!r}")
    return _Worker(process)


def _go(workers: list[_Worker]) -> int:
    for worker in workers:
        worker.follow()
    start = time.monotonic_ns()
    for worker in workers:
        assert worker.process.stdin is not None
        worker.process.stdin.write(b"go\n")
        worker.process.stdin.flush()
    return start


def _stop(workers: list[_Worker]) -> None:
    for worker in workers:
        if worker.process.poll() is None and worker.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                worker.process.stdin.close()  # end of input: the worker leaves its group
    for worker in workers:
        try:
            worker.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the group scenario waited too long for {what}")
        time.sleep(0.02)


def _drain(endpoint: str, workers_n: int, last: dict[str, int], total: int) -> Row:
    workers = [
        _spawn(endpoint, f"drain-{workers_n}", "TRIM_HORIZON", 10.0) for _ in range(workers_n)
    ]
    try:
        start = _go(workers)

        def done_at() -> int | None:
            reached: dict[str, int] = {}
            when = 0
            for worker in workers:
                for report in worker.reports:
                    for shard, seq in report["positions"].items():
                        if seq >= last[shard] and shard not in reached:
                            reached[shard] = report["t"]
            if len(reached) == len(last):
                when = max(reached.values())
                return when
            return None

        _wait(lambda: done_at() is not None, DRAIN_TIMEOUT_S, "the drain")
        end = done_at()
        assert end is not None
        delivered = sum(w.latest.get("count", 0) for w in workers)
    finally:
        _stop(workers)
    seconds = (end - start) / 1e9
    return {
        "workers": workers_n,
        "records": total,
        "seconds": seconds,
        "records_per_s": total / seconds,
        "duplicates": max(0, delivered - total),
    }


def _failover(endpoint: str) -> Row:
    lease = DEFAULT_LEASE_DURATION_S
    stop = threading.Event()

    async def produce() -> None:
        async with Client(endpoint) as client:
            shards = (await client.list_shards(STREAM)).shards
            keys = [s.hash_key_range.starting_hash_key for s in shards]
            entries = [
                {"Data": b"x" * RECORD_BYTES, "PartitionKey": "k", "ExplicitHashKey": key}
                for key in keys
            ]
            while not stop.is_set():
                await client.call("PutRecords", {"StreamName": STREAM, "Records": entries})
                await trio.sleep(TICK_S)

    producer = threading.Thread(target=trio.run, args=(produce,), daemon=True)
    producer.start()
    workers = [_spawn(endpoint, "failover", "LATEST", lease) for _ in range(2)]
    try:
        _go(workers)
        _wait(
            lambda: (
                all(len(w.latest.get("shards", ())) == SHARDS // 2 for w in workers)
                and all(len(w.latest.get("positions", {})) >= SHARDS // 2 for w in workers)
            ),
            120.0,
            "two workers holding four shards each",
        )
        victim, survivor = workers
        lost = set(victim.latest["shards"])
        before = {s: survivor.latest["positions"].get(s, -1) for s in lost}
        victim.process.send_signal(signal.SIGKILL)
        killed = time.monotonic_ns()
        victim.process.wait()
        # The survivor's position on each lost shard must pass the victim's last one
        # (what it delivered after the kill); a shard the survivor never read counts
        # from its first record.
        victim_positions = dict(victim.latest["positions"])

        def recovered() -> bool:
            positions = survivor.latest.get("positions", {})
            return all(
                positions.get(s, -1) > max(before[s], victim_positions.get(s, -1)) for s in lost
            )

        _wait(recovered, FAILOVER_TIMEOUT_S, "the survivor to take the lost shards")
        seen = survivor.latest["t"]
        # The first report that shows it: the time is that report's own.
        for report in survivor.reports:
            if report["t"] > killed and all(
                report["positions"].get(s, -1) > max(before[s], victim_positions.get(s, -1))
                for s in lost
            ):
                seen = report["t"]
                break
    finally:
        stop.set()
        _stop(workers)
        producer.join(timeout=30)
    return {"workers": 2, "lease_s": lease, "failover_s": (seen - killed) / 1e9}


COLUMNS = (
    Column("workers", "workers"),
    Column("records", "records", ",.0f"),
    Column("seconds", "seconds", ".2f"),
    Column("records_per_s", "records/s", ",.0f"),
    Column("duplicates", "duplicates", ",.0f"),
    Column("failover_s", "failover s", ".2f"),
)


def run(options: Options) -> ScenarioResult:
    total = options.records or (QUICK_RECORDS if options.quick else RECORDS)
    counts = QUICK_WORKERS if options.quick else WORKERS
    result = ScenarioResult(
        parameters={
            "shards": SHARDS,
            "records": total,
            "record_bytes": RECORD_BYTES,
            "workers": list(counts),
            "drain": "fresh group from TRIM_HORIZON, checkpoint per batch, workers in processes",
            "failover": f"2 workers from LATEST, lease {DEFAULT_LEASE_DURATION_S} s, SIGKILL one",
        },
        columns=COLUMNS,
    )
    with (
        scratch_directory(options, "group") as tmp,
        broker_server(os.path.join(tmp, "data")) as server,
    ):
        stored = trio.run(fill_stream, server.endpoint, STREAM, SHARDS, total)
        last = {shard: numbers[-1] for shard, numbers in stored.items()}
        filled = sum(1 for _ in last)
        if filled != SHARDS:
            raise RuntimeError(f"only {filled} of {SHARDS} shards got records")
        for n in counts:
            with options.section(f"drain {n}"):
                result.rows.append(_drain(server.endpoint, n, last, (total + 499) // 500 * 500))
        with options.section("failover"):
            failover = _failover(server.endpoint)
        result.rows.append(failover)
    result.goals = [
        Goal(
            f"failover after SIGKILL within the lease duration + 1 s "
            f"({DEFAULT_LEASE_DURATION_S + 1:.0f} s)",
            DEFAULT_LEASE_DURATION_S + 1,
            failover["failover_s"],
            at_most=True,
        )
    ]
    result.notes.append(
        "drain: records/s from the start signal until every shard's last record was "
        "delivered (balancing included); duplicates: records delivered more than once"
    )
    return result


SCENARIO = Scenario(
    "group",
    "consumer groups of 1, 2, 4 processes draining 8 shards; failover after SIGKILL",
    run,
)
