"""Scenarios ``functions``, ``functions-latency`` and ``parallel``: event source mappings at work.

Each starts a broker server and ``shardline worker`` (its own processes, as
users run it: ``functions`` with ``--processes`` one per core, the others with
one), creates an event source mapping with a handler from ``bench.handlers``
and measures:

- ``functions``: a ``SHARDS``-shard stream pre-filled with 100 B records
  (random keys), a no-op ``python:`` handler, ``BatchSize`` 1,000, from
  TRIM_HORIZON: the records the checkpoints passed from the first checkpoint
  to the last (every shard at its last record), over that time: the worker's
  start-up and its first lease takes are left out.
  Goal (issue 6): >= 300,000 records/s.
- ``functions-latency``: records produced at 1,000/s on a fixed schedule (the
  ``fanout`` scenario's producer: 3 records every 3 ms, each carrying its
  due time), ``BatchSize`` 100, no batching window: the time from each
  record's due time to the start of the invocation that carries it (the
  handler notes ``time.monotonic_ns()`` when called), p50/p99. Goal: p99
  <= 20 ms.
- ``parallel``: a 1-shard stream pre-filled with records over 1,000 partition
  keys, ``BatchSize`` 100, a handler that sleeps 10 ms per batch, with
  ``ParallelizationFactor`` 1 and then 10 (a fresh mapping each, from
  TRIM_HORIZON): records/s as in ``functions``, measured from the
  checkpoints. Goal: factor 10 gives >= 8x factor 1's throughput.
"""

from __future__ import annotations

import bisect
import functools
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np
import trio

from broker.client import Client
from broker.errors import ShardlineError

from ..broker_process import broker_server
from ..scenario import Column, Goal, Options, Row, Scenario, ScenarioResult, scratch_directory
from ..workload import fill_stream
from . import fanout_clients as fanout

RECORD_BYTES = 100
SHARDS = 4
#: ``functions``' worker processes: one per core, as docs/functions.md advises.
WORKER_PROCESSES = os.cpu_count() or 1
RECORDS = 1_000_000
QUICK_RECORDS = 200_000
PARALLEL_RECORDS = 200_000
PARALLEL_KEYS = 1_000
LATENCY_DURATION = 10.0
LATENCY_WARMUP = 2.0
QUICK_LATENCY_DURATION = 3.0
TIMEOUT_S = 600.0
GOAL_RATE = 300_000
GOAL_P99_MS = 20.0
GOAL_SPEEDUP = 8.0


# -- shared steps -----------------------------------------------------------------


async def _create_mapping(endpoint: str, stream: str, function: str, **params: Any) -> str:
    async with Client(endpoint) as client:
        arn = (await client.describe_stream_summary(stream)).stream_arn
        request = {"FunctionName": function, "EventSourceArn": arn, **params}
        answer = await client.call("CreateEventSourceMapping", request)
    uuid: str = answer["UUID"]
    return uuid


async def _delete_mapping(endpoint: str, uuid: str) -> None:
    async with Client(endpoint) as client:
        await client.call("DeleteEventSourceMapping", {"UUID": uuid})


def _start_worker(
    endpoint: str, env: dict[str, str] | None = None, processes: int = 1
) -> subprocess.Popen[bytes]:
    """``shardline worker`` with ``processes`` processes, once every one of them is running."""
    command = [sys.executable, "-m", "broker.cli", "--endpoint", endpoint, "worker"]
    process = subprocess.Popen(
        [*command, "--poll-interval", "0.2", "--processes", str(processes)],
        stdout=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    for _ in range(processes):  # each process says so (the children share the pipe)
        line = process.stdout.readline().decode()
        if "running" not in line:
            process.kill()
            raise RuntimeError(f"the worker did not start: {line!r}")
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _progress(
    endpoint: str, stream: str, uuid: str, stored: dict[str, list[int]], timeout: float
) -> list[tuple[float, int]]:
    """(monotonic seconds, records processed) as the checkpoints move, until all are."""
    application = f"mapping-{uuid}"
    done = dict.fromkeys(stored, 0)
    total = sum(len(numbers) for numbers in stored.values())
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    async with Client(endpoint) as client:
        while sum(done.values()) < total:
            for shard, numbers in stored.items():
                if done[shard] == len(numbers):
                    continue
                try:
                    cp = await client.get_checkpoint(stream, application, shard)
                except ShardlineError:
                    continue
                if cp.sequence_number == "SHARD_END":
                    done[shard] = len(numbers)
                else:
                    done[shard] = bisect.bisect_right(numbers, int(cp.sequence_number))
            samples.append((time.monotonic(), sum(done.values())))
            if time.monotonic() > deadline:
                raise RuntimeError(f"mapping {uuid} did not finish in {timeout:g} s")
            await trio.sleep(0.01)
    return samples


def _drain(
    endpoint: str, stream: str, uuid: str, stored: dict[str, list[int]], processes: int = 1
) -> Row:
    """Records/s from the first checkpoint to the last: the worker's start-up is left out."""
    worker = _start_worker(endpoint, processes=processes)
    try:
        samples = trio.run(_progress, endpoint, stream, uuid, stored, TIMEOUT_S)
    finally:
        _stop(worker)
    first = next(i for i, (_t, n) in enumerate(samples) if n > 0)
    (t0, n0), (t1, n1) = samples[first], samples[-1]
    return {
        "records": n1,
        "measured_records": n1 - n0,
        "seconds": t1 - t0,
        "records_per_s": (n1 - n0) / (t1 - t0) if t1 > t0 else None,
    }


# -- functions --------------------------------------------------------------------


def run_functions(options: Options) -> ScenarioResult:
    records = options.records or (QUICK_RECORDS if options.quick else RECORDS)
    records = (records + 499) // 500 * 500
    result = ScenarioResult(
        parameters={
            "shards": SHARDS,
            "records": records,
            "record_bytes": RECORD_BYTES,
            "handler": "python:bench.handlers:noop",
            "batch_size": 1000,
            "worker": f"shardline worker --processes {WORKER_PROCESSES} (one per core)",
            "measured": "records the checkpoints passed, first checkpoint to last, over that time",
        },
        columns=(
            Column("records", "records", ",.0f"),
            Column("seconds", "seconds", ".2f"),
            Column("records_per_s", "records/s", ",.0f"),
        ),
    )
    with (
        scratch_directory(options, "functions") as tmp,
        broker_server(os.path.join(tmp, "data")) as server,
    ):
        last = trio.run(fill_stream, server.endpoint, "functions", SHARDS, records)
        uuid = trio.run(
            functools.partial(
                _create_mapping,
                server.endpoint,
                "functions",
                "python:bench.handlers:noop",
                StartingPosition="TRIM_HORIZON",
                BatchSize=1000,
            )
        )
        with options.section("functions"):
            row = _drain(server.endpoint, "functions", uuid, last, WORKER_PROCESSES)
    result.rows.append(row)
    result.goals = [Goal("records/s through a no-op handler", GOAL_RATE, row["records_per_s"])]
    return result


# -- functions-latency ------------------------------------------------------------


def run_latency(options: Options) -> ScenarioResult:
    duration = options.duration or (QUICK_LATENCY_DURATION if options.quick else LATENCY_DURATION)
    warmup = options.warmup if options.warmup is not None else LATENCY_WARMUP
    result = ScenarioResult(
        parameters={
            "rate": 1000,
            "schedule": "3 records due every 3 ms (fanout's producer)",
            "batch_size": 100,
            "batching_window_s": 0,
            "duration_s": duration,
            "warmup_s": warmup,
            "measured": "record due time -> start of the invocation carrying it",
        },
        columns=(
            Column("records", "records", ",.0f"),
            Column("p50_ms", "p50 ms", ".2f"),
            Column("p90_ms", "p90 ms", ".2f"),
            Column("p99_ms", "p99 ms", ".2f"),
            Column("max_ms", "max ms", ".1f"),
        ),
    )
    with (
        scratch_directory(options, "functions-latency") as tmp,
        broker_server(os.path.join(tmp, "data")) as server,
    ):
        path = os.path.join(tmp, "invocations.txt")
        endpoint = server.endpoint

        async def setup() -> str:
            async with Client(endpoint) as client:
                await client.create_stream(fanout.STREAM, 1)
            return await _create_mapping(
                endpoint,
                fanout.STREAM,
                "python:bench.handlers:record_due_times",
                StartingPosition="LATEST",
                BatchSize=100,
            )

        trio.run(setup)
        worker = _start_worker(endpoint, {"SHARDLINE_BENCH_LATENCY_FILE": path})
        try:
            # Ready once a record put now reaches the handler.
            async def ready() -> None:
                async with Client(endpoint) as client:
                    deadline = time.monotonic() + 60
                    while not (os.path.exists(path) and os.path.getsize(path)):
                        if time.monotonic() > deadline:
                            raise RuntimeError("the mapping never invoked its handler")
                        await client.put_records(fanout.STREAM, [fanout._record(0)])
                        await trio.sleep(0.2)

            trio.run(ready)
            start_ns = time.monotonic_ns() + 1_000_000_000
            window = (start_ns + int(warmup * 1e9), start_ns + int((warmup + duration) * 1e9))
            with options.section("functions-latency"):
                fanout.produce(endpoint, 1000.0, warmup + duration, start_ns)
                time.sleep(1.0)  # the last invocations' lines (the handler appends as it runs)
        finally:
            _stop(worker)
        latencies = []
        with open(path) as lines:
            for line in lines:
                started, *dues = map(int, line.split())
                latencies += [started - d for d in dues if window[0] <= d < window[1]]
    lat = np.asarray(latencies, dtype=np.float64) / 1e6
    expected = int(1000 * duration)
    row: Row = {
        "records": int(lat.size),
        "expected": expected,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p90_ms": float(np.percentile(lat, 90)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "max_ms": float(lat.max()) if lat.size else None,
    }
    result.rows.append(row)
    result.goals = [
        Goal("put -> invocation p99 at 1,000 records/s", GOAL_P99_MS, row["p99_ms"], True)
    ]
    return result


# -- parallel ----------------------------------------------------------------------


def run_parallel(options: Options) -> ScenarioResult:
    records = PARALLEL_RECORDS // 5 if options.quick else PARALLEL_RECORDS
    result = ScenarioResult(
        parameters={
            "shards": 1,
            "records": records,
            "partition_keys": PARALLEL_KEYS,
            "handler": "python:bench.handlers:sleep_10ms",
            "batch_size": 100,
        },
        columns=(
            Column("factor", "ParallelizationFactor"),
            Column("records", "records", ",.0f"),
            Column("seconds", "seconds", ".2f"),
            Column("records_per_s", "records/s", ",.0f"),
        ),
    )
    with (
        scratch_directory(options, "parallel") as tmp,
        broker_server(os.path.join(tmp, "data")) as server,
    ):
        endpoint = server.endpoint
        last = trio.run(
            functools.partial(fill_stream, endpoint, "parallel", 1, records, keys=PARALLEL_KEYS)
        )
        for factor in (1, 10):
            uuid = trio.run(
                functools.partial(
                    _create_mapping,
                    endpoint,
                    "parallel",
                    "python:bench.handlers:sleep_10ms",
                    StartingPosition="TRIM_HORIZON",
                    BatchSize=100,
                    ParallelizationFactor=factor,
                )
            )
            with options.section(f"parallel {factor}"):
                row = _drain(endpoint, "parallel", uuid, last)
            trio.run(_delete_mapping, endpoint, uuid)
            result.rows.append({"factor": factor, **row})
    one, ten = result.rows[0]["records_per_s"], result.rows[1]["records_per_s"]
    result.goals = [Goal("ParallelizationFactor 10 over 1", GOAL_SPEEDUP, ten / one)]
    return result


FUNCTIONS = Scenario(
    "functions", "a no-op python handler draining 4 shards, BatchSize 1,000", run_functions
)
FUNCTIONS_LATENCY = Scenario(
    "functions-latency", "due time -> invocation at 1,000 records/s, BatchSize 100", run_latency
)
PARALLEL = Scenario(
    "parallel", "ParallelizationFactor 1 and 10, a 10 ms handler, 1 shard", run_parallel
)
