"""Scenario ``ingest``: PutRecords over the wire from a separate producer process.

A broker server runs in its own process (``shardline serve`` on a free
loopback port, fresh data directory, default settings: every acknowledgement
follows a durable commit). A producer process creates a stream of ``SHARDS``
shards and sends PutRecords of ``RECORDS_PER_REQUEST`` x ``RECORD_BYTES``
records (distinct random partition keys, so the server routes them over all
shards) over ONE HTTP/2 connection. Each request is encoded when it is sent,
as ``Client.put_records`` encodes it: the compact form
(``broker.protocol.compact_puts``), with the client's MD5 of every key, so
the producer's share of routing is measured too; the answer's map is decoded
and checked, not turned into typed entries.

1. **Peak**: ``CONCURRENCY`` tasks, each sending its next request as soon as
   the previous one is answered; after a warm-up, acknowledged records per
   second over ``duration`` seconds. A response with a failed record is
   counted as an error.
2. **Latency at half the peak**: an open-loop schedule, request ``i`` due at
   ``t0 + i / rate`` with ``rate`` = half the measured peak in requests/s,
   each sent by its own task at its due time; latency runs from the due time
   to the response, so a stall of the producer, the connection or the server
   counts against every request it delays. p50/p99/max over ``duration``.

The server's CPU seconds (from ``/proc``) per measured second are reported
beside each phase (1.0 = one core busy).

To profile: run the server under ``py-spy record --threads -f raw`` (``shardline
serve --port P``) and the producer against it: ``python -c "import sys; from
bench.scenarios.ingest import child_main; child_main(sys.argv[1:])" peak
--endpoint http://127.0.0.1:P``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import trio

from broker.client import Client
from broker.protocol.codec import encode_body
from broker.protocol.compact_puts import compact_request

from ..broker_process import broker_server, run_child
from ..peers import suite
from ..scenario import Column, Goal, Options, Row, Scenario, ScenarioResult, scratch_directory

STREAM = "ingest"
SHARDS = 8
RECORDS_PER_REQUEST = 500
RECORD_BYTES = 100
DISTINCT_REQUESTS = 64
CONCURRENCY = 16
DURATION = 12.0
WARMUP = 2.0
QUICK_DURATION = 3.0
QUICK_WARMUP = 0.5

GOAL_RATE = 500_000
GOAL_P99_MS = 10.0
GOAL_VS_REDIS_PY = 2.0
GOAL_VS_REDIS_C = 1.0


def _ratio_of(rows: list[Row], system: str) -> float | None:
    """The ratio shardline / peer of the peer row whose system name contains ``system``."""
    for row in rows:
        if system in str(row.get("system")):
            ratio = row.get("shardline_ratio")
            return float(ratio) if isinstance(ratio, int | float) else None
    return None


def request_records(count: int, seed: int = 7) -> list[list[dict[str, Any]]]:
    """``count`` PutRecords' worth of fresh random records and keys (Kinesis-named maps)."""
    rng = random.Random(seed)
    requests = []
    for n in range(count):
        blob = rng.randbytes(RECORDS_PER_REQUEST * RECORD_BYTES)
        records = [
            {
                "Data": blob[i * RECORD_BYTES : (i + 1) * RECORD_BYTES],
                "PartitionKey": f"k{n}-{i}-{rng.getrandbits(40):x}",
            }
            for i in range(RECORDS_PER_REQUEST)
        ]
        requests.append(records)
    return requests


# -- the producer (a child process) -------------------------------------------


@dataclass(slots=True)
class _Tally:
    measuring: bool = False
    records: int = 0
    requests: int = 0
    errors: int = 0


async def _put(client: Client, records: list[dict[str, Any]]) -> bool:
    """Encode and send one PutRecords as ``Client.put_records`` does; whether all landed."""
    compact = compact_request(records)
    assert compact is not None
    compact["StreamName"] = STREAM
    response = await client.call_encoded("PutRecords", encode_body(compact))
    positions = response.get("Positions")
    return response.get("FailedRecordCount") == 0 and len(positions or b"") == len(records)


async def _closed_loop(
    client: Client, requests: list[list[dict[str, Any]]], offset: int, tally: _Tally
) -> None:
    i = offset
    while True:
        ok = await _put(client, requests[i % len(requests)])
        i += 1
        if tally.measuring:
            if ok:
                tally.records += RECORDS_PER_REQUEST
                tally.requests += 1
            else:
                tally.errors += 1


async def peak(
    endpoint: str, concurrency: int, warmup: float, duration: float, *, create: bool = True
) -> dict[str, Any]:
    requests = request_records(DISTINCT_REQUESTS)
    tally = _Tally()
    async with Client(endpoint) as client:
        if create:
            await client.create_stream(STREAM, SHARDS)
        async with trio.open_nursery() as nursery:
            for k in range(concurrency):
                nursery.start_soon(_closed_loop, client, requests, k * 7, tally)
            await trio.sleep(warmup)
            tally.measuring = True
            cpu0, t0 = time.process_time(), time.perf_counter()
            await trio.sleep(duration)
            seconds = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            tally.measuring = False
            nursery.cancel_scope.cancel()
    return {
        "seconds": seconds,
        "records": tally.records,
        "requests": tally.requests,
        "errors": tally.errors,
        "records_per_s": tally.records / seconds,
        "producer_cpu": cpu / seconds,
    }


async def paced(endpoint: str, rate: float, warmup: float, duration: float) -> dict[str, Any]:
    """Open loop at ``rate`` requests/s; latencies from each request's due time."""
    requests = request_records(DISTINCT_REQUESTS, seed=11)
    latencies: list[float] = []
    errors = 0

    async def one(records: list[dict[str, Any]], due: float, measured: bool) -> None:
        nonlocal errors
        ok = await _put(client, records)
        if measured:
            latencies.append(trio.current_time() - due)
            errors += not ok

    async with Client(endpoint) as client:
        await client.call("DescribeStreamSummary", {"StreamName": STREAM})
        async with trio.open_nursery() as nursery:
            start = trio.current_time() + 0.05
            total = int((warmup + duration) * rate)
            first_measured = int(warmup * rate)
            cpu0 = 0.0
            for i in range(total):
                due = start + i / rate
                await trio.sleep_until(due)
                if i == first_measured:
                    cpu0 = time.process_time()
                nursery.start_soon(one, requests[i % len(requests)], due, i >= first_measured)
        cpu = time.process_time() - cpu0
    lat = np.asarray(latencies) * 1e3
    sent = total - first_measured
    return {
        "rate_requests_per_s": rate,
        "requests": sent,
        "errors": errors,
        "p50_ms": float(np.percentile(lat, 50)),
        "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
        "producer_cpu": cpu / duration,
    }


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="ingest producer")
    parser.add_argument("phase", choices=("peak", "paced"))
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s (paced)")
    parser.add_argument("--warmup", type=float, default=WARMUP)
    parser.add_argument("--duration", type=float, default=DURATION)
    args = parser.parse_args(argv)
    if args.phase == "peak":
        out = trio.run(peak, args.endpoint, args.concurrency, args.warmup, args.duration)
    else:
        out = trio.run(paced, args.endpoint, args.rate, args.warmup, args.duration)
    print(json.dumps(out), flush=True)


# -- the scenario (the parent) -------------------------------------------------


def _measure(options: Options, duration: float, warmup: float) -> Row:
    with (
        scratch_directory(options, "ingest") as tmp,
        options.section("ingest"),
        broker_server(os.path.join(tmp, "data")) as server,
    ):
        timing = ["--warmup", str(warmup), "--duration", str(duration)]
        cpu0 = server.cpu_seconds()
        top = run_child(
            "bench.scenarios.ingest",
            "peak",
            "--endpoint",
            server.endpoint,
            "--concurrency",
            str(CONCURRENCY),
            *timing,
        )
        cpu1 = server.cpu_seconds()
        rate = top["records_per_s"] / 2 / RECORDS_PER_REQUEST
        half = run_child(
            "bench.scenarios.ingest",
            "paced",
            "--endpoint",
            server.endpoint,
            "--rate",
            f"{rate:.3f}",
            *timing,
        )
        cpu2 = server.cpu_seconds()
    row: Row = {
        "system": "shardline",
        "records_per_s": top["records_per_s"],
        "mb_per_s": top["records_per_s"] * RECORD_BYTES / 1e6,
        "requests_per_s": top["requests"] / top["seconds"],
        "peak_errors": top["errors"],
        "producer_cpu_peak": top["producer_cpu"],
        "server_cpu_peak": None,
        "half_rate_records_per_s": rate * RECORDS_PER_REQUEST,
        "p50_ms": half["p50_ms"],
        "p90_ms": half["p90_ms"],
        "p99_ms": half["p99_ms"],
        "max_ms": half["max_ms"],
        "half_errors": half["errors"],
        "server_cpu_half": None,
        "producer_cpu_half": half["producer_cpu"],
    }
    if cpu0 is not None and cpu1 is not None and cpu2 is not None:
        # Includes the warm-ups and the producer's setup: an upper bound per measured second.
        row["server_cpu_peak"] = (cpu1 - cpu0) / (duration + warmup)
        row["server_cpu_half"] = (cpu2 - cpu1) / (duration + warmup)
    return row


COLUMNS = (
    Column("system", "system"),
    Column("records_per_s", "peak records/s", ",.0f"),
    Column("mb_per_s", "MB/s", ",.1f"),
    Column("requests_per_s", "requests/s", ",.0f"),
    Column("server_cpu_peak", "server CPU", ".2f"),
    Column("producer_cpu_peak", "producer CPU", ".2f"),
    Column("half_rate_records_per_s", "half rate rec/s", ",.0f"),
    Column("p50_ms", "p50 ms", ".2f"),
    Column("p99_ms", "p99 ms", ".2f"),
    Column("max_ms", "max ms", ".2f"),
    Column("server_cpu_half", "server CPU (half)", ".2f"),
)


def run(options: Options) -> ScenarioResult:
    duration, warmup = options.timing(DURATION, WARMUP, QUICK_DURATION, QUICK_WARMUP)
    result = ScenarioResult(
        parameters={
            "shards": SHARDS,
            "records_per_request": RECORDS_PER_REQUEST,
            "record_bytes": RECORD_BYTES,
            "concurrency": CONCURRENCY,
            "connections": 1,
            "duration_s": duration,
            "warmup_s": warmup,
            "server": "shardline serve in its own process, default settings (durable commits)",
            "producer": (
                "a separate process: one Client, one HTTP/2 connection, each request "
                "encoded when sent (compact form, the client's MD5 of each key)"
            ),
            "latency": "open loop at half the peak request rate, from each request's due time",
            "peers": "Redis Streams (XADD pipelines of 500, one stream) and NATS JetStream "
            "(publishes acknowledged in batches of 500), same record size, same run",
        },
        columns=COLUMNS,
    )
    row = _measure(options, duration, warmup)
    result.rows.append(row)
    result.goals = [
        Goal("ingest records/s >= 500,000", GOAL_RATE, row["records_per_s"]),
        Goal("p99 PutRecords latency at half the peak <= 10 ms", GOAL_P99_MS, row["p99_ms"], True),
    ]
    if options.peers:
        peers = suite.ingest_rows(options, warmup, duration, row["records_per_s"])
        result.rows += peers
        result.goals += [
            Goal(
                "shardline / Redis Streams via redis-py + hiredis (appendfsync always) >= 2",
                GOAL_VS_REDIS_PY,
                _ratio_of(peers, "redis-py + hiredis (appendfsync always)"),
            ),
            Goal(
                "shardline / Redis Streams via redis-benchmark (appendfsync always) >= 1",
                GOAL_VS_REDIS_C,
                _ratio_of(peers, "redis-benchmark C client (appendfsync always)"),
            ),
        ]
    result.notes.append(
        "server CPU: CPU seconds of the server process per second of the phase, warm-up "
        "included (1.00 = one core); producer CPU likewise for the producer process"
    )
    return result


SCENARIO = Scenario(
    "ingest",
    "PutRecords of 500 x 100 B from a separate process over one HTTP/2 connection",
    run,
)
