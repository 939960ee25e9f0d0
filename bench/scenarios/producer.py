"""Scenario ``producer``: the ``Producer`` library against raw PutRecords, same broker, same run.

A broker server runs in its own process (default settings: every
acknowledgement follows a durable commit) with a stream of ``SHARDS`` shards.
Two kinds of producer process take turns against it, ``ROUNDS`` times each,
alternating, so that both see the same machine:

- **raw**: the ``ingest`` scenario's peak phase: PutRecords of 500 x 100 B
  records with random keys, each request encoded as ``Client.put_records``
  encodes it (compact form, the client's MD5 of every key) when it is sent,
  ``CONCURRENCY`` requests in flight on one connection. What a hand-tuned
  client gets.
- **producer**: ``Producer(endpoint, stream)`` with its defaults (idempotent,
  batches per shard routed on the client, linger, bounded buffer): one task
  calls ``send(data, key)`` for 100 B records with random keys as fast as the
  buffer takes them, for ``duration`` seconds after a warm-up, then
  ``flush()``. The rate is the records acknowledged over the time from the
  first measured ``send`` to the end of the flush.

Goals (issue 5): the producer's median rate >= 0.8 x the raw median, and
>= 400,000 records/s.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import statistics
import time
from typing import Any

import trio

from broker.client import Client, Producer

from ..broker_process import broker_server, run_child
from ..scenario import Column, Goal, Options, Row, Scenario, ScenarioResult, scratch_directory
from .ingest import CONCURRENCY, RECORD_BYTES, SHARDS, STREAM
from .ingest import peak as raw_peak

ROUNDS = 3
QUICK_ROUNDS = 1
DURATION = 8.0
WARMUP = 2.0
QUICK_DURATION = 3.0
QUICK_WARMUP = 0.5
DISTINCT_KEYS = 65_536
GOAL_RATIO = 0.8
GOAL_RATE = 400_000


async def produce(endpoint: str, warmup: float, duration: float) -> dict[str, Any]:
    """Send as fast as the Producer takes records; rate over the measured part."""
    rng = random.Random(5)
    keys = [f"k{rng.getrandbits(48):x}" for _ in range(DISTINCT_KEYS)]
    blob = rng.randbytes(RECORD_BYTES * 64)
    datas = [blob[i : i + RECORD_BYTES] for i in range(0, len(blob), RECORD_BYTES)]
    mask = DISTINCT_KEYS - 1
    async with Client(endpoint) as client:
        await client.describe_stream_summary(STREAM)
        async with Producer(endpoint, STREAM, client=client) as producer:
            i = 0
            deadline = time.perf_counter() + warmup
            while time.perf_counter() < deadline:
                for _ in range(1000):
                    await producer.send(datas[i & 63], keys[i & mask])
                    i += 1
            await producer.flush()
            before = producer.statistics()
            sent = 0
            cpu0, t0 = time.process_time(), time.perf_counter()
            deadline = t0 + duration
            while time.perf_counter() < deadline:
                for _ in range(1000):
                    await producer.send(datas[i & 63], keys[i & mask])
                    i += 1
                sent += 1000
            await producer.flush()
            seconds = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            after = producer.statistics()
    failed = after.records_failed - before.records_failed
    return {
        "records": sent,
        "seconds": seconds,
        "records_per_s": (sent - failed) / seconds,
        "failed": failed,
        "retried": after.records_retried - before.records_retried,
        "batches": after.batches - before.batches,
        "mean_batch": (sent / max(1, after.batches - before.batches)),
        "p50_ms": after.latency_p50_ms,
        "p99_ms": after.latency_p99_ms,
        "producer_cpu": cpu / seconds,
    }


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="producer bench child")
    parser.add_argument("kind", choices=("raw", "producer"))
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--warmup", type=float, default=WARMUP)
    parser.add_argument("--duration", type=float, default=DURATION)
    args = parser.parse_args(argv)
    if args.kind == "raw":
        out = trio.run(
            functools.partial(raw_peak, create=False),
            args.endpoint,
            CONCURRENCY,
            args.warmup,
            args.duration,
        )
    else:
        out = trio.run(produce, args.endpoint, args.warmup, args.duration)
    print(json.dumps(out), flush=True)


async def _create(endpoint: str) -> None:
    async with Client(endpoint) as client:
        await client.create_stream(STREAM, SHARDS)


def _measure(options: Options, rounds: int, duration: float, warmup: float) -> list[Row]:
    rows: list[Row] = []
    with (
        scratch_directory(options, "producer") as tmp,
        broker_server(os.path.join(tmp, "data")) as server,
    ):
        trio.run(_create, server.endpoint)
        timing = ["--warmup", str(warmup), "--duration", str(duration)]
        for n in range(rounds):
            for kind in ("raw", "producer"):
                with options.section(f"{kind} round {n}"):
                    cpu0 = server.cpu_seconds()
                    out = run_child(
                        "bench.scenarios.producer", kind, "--endpoint", server.endpoint, *timing
                    )
                    cpu1 = server.cpu_seconds()
                rows.append(
                    {
                        "round": n,
                        "kind": kind,
                        "records_per_s": out["records_per_s"],
                        "mean_batch": out.get("mean_batch"),
                        "failed": out.get("failed", out.get("errors")),
                        "p50_ms": out.get("p50_ms"),
                        "p99_ms": out.get("p99_ms"),
                        "producer_cpu": out["producer_cpu"],
                        "server_cpu": None
                        if cpu0 is None or cpu1 is None
                        else (cpu1 - cpu0) / (warmup + duration),
                    }
                )
    return rows


COLUMNS = (
    Column("round", "round"),
    Column("kind", "client"),
    Column("records_per_s", "records/s", ",.0f"),
    Column("mean_batch", "records/request", ",.0f"),
    Column("failed", "failed"),
    Column("p50_ms", "send->ack p50 ms", ".2f"),
    Column("p99_ms", "send->ack p99 ms", ".2f"),
    Column("producer_cpu", "producer CPU", ".2f"),
    Column("server_cpu", "server CPU", ".2f"),
)


def run(options: Options) -> ScenarioResult:
    duration = options.duration or (QUICK_DURATION if options.quick else DURATION)
    warmup = (
        options.warmup
        if options.warmup is not None
        else (QUICK_WARMUP if options.quick else WARMUP)
    )
    rounds = options.rounds or (QUICK_ROUNDS if options.quick else ROUNDS)
    result = ScenarioResult(
        parameters={
            "shards": SHARDS,
            "record_bytes": RECORD_BYTES,
            "rounds": rounds,
            "duration_s": duration,
            "warmup_s": warmup,
            "raw": f"PutRecords of 500 records, compact, {CONCURRENCY} in flight",
            "producer": "Producer with its defaults (idempotent), one task calling send()",
        },
        columns=COLUMNS,
    )
    result.rows.extend(_measure(options, rounds, duration, warmup))
    raw = statistics.median(r["records_per_s"] for r in result.rows if r["kind"] == "raw")
    ours = statistics.median(r["records_per_s"] for r in result.rows if r["kind"] == "producer")
    result.goals = [
        Goal("Producer records/s >= 0.8 x raw PutRecords (medians)", GOAL_RATIO, ours / raw),
        Goal("Producer records/s >= 400,000 (median)", GOAL_RATE, ours),
    ]
    result.notes.append(
        f"medians: raw {raw:,.0f} records/s, Producer {ours:,.0f} records/s "
        f"(ratio {ours / raw:.3f}); server CPU includes the warm-up"
    )
    return result


SCENARIO = Scenario(
    "producer",
    "the Producer library against raw PutRecords, alternating rounds on one broker",
    run,
    repeats=1,  # alternating rounds inside, medians over them
)
