"""Scenarios ``fanout`` and ``isolation``: push delivery to many subscribers, and a slow one.

A broker server runs in its own process over a fresh data directory, with a
one-shard stream and one registered consumer per subscriber. Each subscriber
is its own process: it subscribes to the shard (SubscribeToShard, LATEST)
through ``Client.subscribe_to_shard`` in trio (or, with ``Run.blocking``, the
blocking ``SyncClient.subscribe_to_shard``: the ``latency`` scenario's main
rows), says it is ready, and counts what arrives. Then a producer process
writes 100 B records on a **fixed schedule**: every ``tick`` a group of
records is due (the fewest records per group that keep the producer at or
under 400 requests/s: 3 records every 3 ms at 1,000 records/s, 500 every 2.5
ms at 200,000), each group sent as one PutRecords at its due time by the clock
thread itself, over a blocking HTTP/2 connection (as the peers' producers
write their protocols on raw sockets), whatever happened to the previous ones
(open loop). Every record carries its group's due time (``time.monotonic_ns``,
shared by the processes of one machine), so a subscriber's latency for a
record runs from the time it was *due* to the time the subscriber process
decoded it: stalls of the producer, the broker or the subscriber all count,
none is hidden (no coordinated omission).

Per configuration (rate, subscribers): records delivered per second per
subscriber and in total (the records due inside the measured window, after
a warm-up, divided by the time between the arrivals of the first and the
last of them, or by the window when that was shorter: a subscriber whose lag
grows counts as slower, a steady lag shows in the latency), and latency
p50/p90/p99/p99.9/max and a CDF over every delivered record of every
subscriber (``bench.latency.summarize``, numpy). The broker's CPU, its
anonymous memory (``RssAnon`` in ``/proc``: the process's own memory, not
LMDB's mapped file) and its fan-out buffers (feeds and read chunks, from
``/metrics``) are read at the end of the window.

``isolation`` runs the same with one extra subscriber that reads at about
1 % of the rate (it sleeps between events), so it falls behind the broker's
in-memory tail onto LMDB reads, and reports the others' figures against a run
without it, plus the broker's anonymous memory.

Subscribers stop when they have seen the producer's last record (a record
whose due time is -1), or after a drain timeout.

``fanout`` also measures a **pre-filled drain** (``drain``): a stream filled
before timing, read from TRIM_HORIZON by ``DRAIN_SUBSCRIBERS`` subscriber
processes from a common start, each timing itself until it has every record;
delivered records/s over the slowest one's time. These records come from
LMDB (stored batches forwarded as they are), not from the in-memory tail that
serves live subscribers. Its rows carry ``"kind": "drain"``, the live ones
``"kind": "live"``; every row says ``"system": "shardline"``, so that peers'
rows (``bench.peers``) can sit beside them. ``latency`` (its own module)
reuses ``measure`` at fixed rates.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import trio

from broker.client import Client

from .. import children as procs
from ..broker_process import ServerProcess, broker_server
from ..latency import delivered
from ..peers import suite
from ..scenario import Column, Goal, Options, Row, Scenario, ScenarioResult, scratch_directory
from ..workload import fill_stream
from .fanout_clients import RECORD_BYTES, STREAM

#: (records/s, subscribers) measured by ``fanout``.
CONFIGURATIONS = [(1_000, n) for n in (1, 10)] + [(200_000, n) for n in (1, 2, 5, 10, 20)]
QUICK_CONFIGURATIONS = [(1_000, 10), (200_000, 10)]
#: A run shorter than this is a smoke run (the tests'): the fewest processes that check the code.
SMOKE_DURATION = 1.0
SMOKE_CONFIGURATIONS = [(1_000, 2)]
SMOKE_DRAIN_SUBSCRIBERS = 2
DURATION = 10.0
WARMUP = 2.0
QUICK_DURATION = 3.0
QUICK_WARMUP = 1.0
QUICK_PEER_WARMUP = 0.25
QUICK_PEER_DURATION = 0.5
DRAIN_S = 20.0

#: The pre-filled drain: records (``--records`` overrides), subscribers, and its bounds.
DRAIN_RECORDS = 2_000_000
QUICK_DRAIN_RECORDS = 100_000
DRAIN_SUBSCRIBERS = 10
FILL_BATCH = 500  # records per PutRecords of the fill; the stream holds a multiple of it
DRAIN_TIMEOUT_S = 600.0
GO_AHEAD_NS = 200_000_000

GOAL_RATE = 200_000
#: Total delivered with 10 readers, live and pre-filled: shardline over Redis Streams.
GOAL_VS_REDIS = 3.0
GOAL_SUBSCRIBERS = 10
GOAL_LATENCY_RATE = 1_000
GOAL_P50_MS = 2.0
GOAL_P99_MS = 10.0
ISOLATION_LOSS = 0.10
ISOLATION_MEMORY_MB = 300.0


# -- the scenario (the parent) --------------------------------------------------


def _child(*args: str) -> subprocess.Popen[bytes]:
    return procs.spawn("bench.scenarios.fanout_clients", *args)


def _last_json(process: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    return procs.last_json(process, timeout, "a fanout child")


def _wait_ready(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        procs.expect(child, "ready", "a subscriber")


def _tell(children: list[subprocess.Popen[bytes]], line: str) -> None:
    for child in children:
        procs.tell(child, line)


def _anon_mb(server: ServerProcess) -> float | None:
    try:
        with open(f"/proc/{server.process.pid}/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def _buffered_mb(endpoint: str) -> float:
    """The broker's fan-out buffers (feeds and LMDB read chunks), from ``/metrics``."""
    async with Client(endpoint) as client:
        text = await client.metrics()
    total = 0
    for line in text.splitlines():
        if line.startswith(("shardline_fanout_feed_bytes ", "shardline_fanout_read_bytes_held ")):
            total += int(line.split()[1])
    return total / 1e6


async def _register(client: Client, consumers: int) -> list[str]:
    arn = (await client.describe_stream_summary(STREAM)).stream_arn
    return [
        (await client.register_stream_consumer(arn, f"reader-{i}")).consumer_arn
        for i in range(consumers)
    ]


async def _setup(endpoint: str, consumers: int) -> list[str]:
    async with Client(endpoint) as client:
        await client.create_stream(STREAM, 1)
        return await _register(client, consumers)


async def _fill(endpoint: str, records: int, consumers: int) -> list[str]:
    """The stream filled with ``records`` records (``bench.workload``), then its consumers."""
    stored = await fill_stream(endpoint, STREAM, 1, records, record_bytes=RECORD_BYTES)
    if sum(len(numbers) for numbers in stored.values()) != records:
        raise RuntimeError(f"the stream was not filled with {records} records")
    async with Client(endpoint) as client:
        return await _register(client, consumers)


@dataclass(frozen=True, slots=True)
class Run:
    """One live configuration: offered records/s, subscribers, and whether one more reads slowly."""

    rate: int
    subscribers: int
    slow: bool
    #: The subscribers read with the blocking ``SyncClient`` rather than the trio ``Client``.
    blocking: bool = False


def measure(options: Options, run: Run, duration: float, warmup: float) -> Row:
    """One live configuration on a fresh broker: the row of its figures (the module's docstring).

    Keys: ``system`` ("shardline"), ``kind`` ("live"), ``rate``, ``subscribers``,
    ``slow``, ``per_subscriber_min``, ``per_subscriber_median``, ``delivered_total``,
    ``complete``, the latency figures of ``bench.latency.summarize`` (``p50_ms``,
    ``p90_ms``, ``p99_ms``, ``p999_ms``, ``max_ms``, ``cdf_ms``), ``server_cpu``,
    ``server_anon_mb``, ``buffered_mb``, ``late_groups``, ``failed_records``.
    """
    total = run.subscribers + (1 if run.slow else 0)
    with (
        scratch_directory(options, "fanout") as tmp,
        broker_server(os.path.join(tmp, "data")) as server,
        procs.reaped() as children,
    ):
        arns = trio.run(_setup, server.endpoint, total)
        for i, arn in enumerate(arns):
            delay = 0.0
            if run.slow and i == total - 1:
                # ~1 % of the rate: events arrive in groups of one commit's records.
                delay = 0.2
            children.append(
                _child(
                    "subscriber",
                    "--endpoint",
                    server.endpoint,
                    "--consumer",
                    arn,
                    "--delay",
                    str(delay),
                    *(["--blocking"] if run.blocking else []),
                )
            )
        _wait_ready(children)
        # Every subscriber is subscribed: the schedule starts shortly (the producer's start-up).
        start_ns = time.monotonic_ns() + 1_500_000_000
        window = (start_ns + int(warmup * 1e9), start_ns + int((warmup + duration) * 1e9))
        _tell(children, f"{window[0]},{window[1]}")
        subscribers = list(children)
        cpu0 = server.cpu_seconds()
        producer = _child(
            "producer",
            "--endpoint",
            server.endpoint,
            "--rate",
            str(run.rate),
            "--seconds",
            str(warmup + duration),
            "--start",
            str(start_ns),
        )
        children.append(producer)
        produced = _last_json(producer, timeout=warmup + duration + 120)
        cpu1 = server.cpu_seconds()
        anon = _anon_mb(server)
        buffered = trio.run(_buffered_mb, server.endpoint)
        results = []
        for i, child in enumerate(subscribers):
            if run.slow and i == total - 1:
                continue  # killed on the way out
            results.append(_last_json(child, timeout=DRAIN_S + 60))
    row: Row = {
        "system": "shardline",
        "kind": "live",
        "rate": run.rate,
        "subscribers": run.subscribers,
        "slow": run.slow,
        **delivered(results, run.rate, duration),
        "server_cpu": None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / (warmup + duration),
        "server_anon_mb": anon,
        "buffered_mb": buffered,
        "late_groups": produced["late_groups"],
        "failed_records": produced["failed_records"],
    }
    return row


def drain(options: Options, records: int, subscribers: int) -> Row:
    """Subscribers draining a pre-filled stream on a fresh broker: the row of its figures.

    Before timing, a one-shard stream is filled with ``records`` 100 B records
    (``bench.workload.fill_stream``: pre-encoded PutRecords of 500, 8 in flight;
    ``records`` is rounded up to a multiple of 500) and ``subscribers``
    consumers are registered. Each subscriber process connects, says it is
    ready, and at a common start time subscribes from TRIM_HORIZON and counts
    records until it has all of them (``drain_shard``), reporting its elapsed
    seconds from the start. Every record is read from LMDB: the broker forwards
    the stored batches as they are, each subscription reading its own chunks.

    Keys: ``system`` ("shardline"), ``kind`` ("drain"), ``records``,
    ``subscribers``, ``per_subscriber_min`` (records over the slowest elapsed),
    ``delivered_total`` (subscribers x records over the slowest elapsed),
    ``seconds`` (the slowest elapsed), ``server_cpu`` (the broker's CPU seconds
    per second of it), ``reads`` (the records each subscriber counted),
    ``subscriptions`` (the most SubscribeToShard calls one needed), ``fill_s``.
    """
    records = -(-records // FILL_BATCH) * FILL_BATCH
    with (
        scratch_directory(options, "drain") as tmp,
        broker_server(os.path.join(tmp, "data")) as server,
        procs.reaped() as children,
    ):
        filling = time.perf_counter()
        arns = trio.run(_fill, server.endpoint, records, subscribers)
        fill_s = time.perf_counter() - filling
        for arn in arns:
            children.append(
                _child(
                    "drainer",
                    "--endpoint",
                    server.endpoint,
                    "--consumer",
                    arn,
                    "--records",
                    str(records),
                )
            )
        _wait_ready(children)
        cpu0 = server.cpu_seconds()
        # A common start, a little ahead: every subscriber has read its line by then.
        _tell(children, str(time.monotonic_ns() + GO_AHEAD_NS))
        results = [_last_json(child, timeout=DRAIN_TIMEOUT_S + 60) for child in children]
        cpu1 = server.cpu_seconds()
    slowest = max(r["seconds"] for r in results)
    row: Row = {
        "system": "shardline",
        "kind": "drain",
        "records": records,
        "subscribers": subscribers,
        "per_subscriber_min": records / slowest,
        "delivered_total": subscribers * records / slowest,
        "seconds": slowest,
        "server_cpu": None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / slowest,
        "reads": [r["records"] for r in results],
        "subscriptions": max(r["subscriptions"] for r in results),
        "fill_s": fill_s,
    }
    return row


COLUMNS = (
    Column("rate", "rate rec/s", ",.0f"),
    Column("subscribers", "subs"),
    Column("per_subscriber_min", "min rec/s per sub", ",.0f"),
    Column("delivered_total", "delivered rec/s", ",.0f"),
    Column("complete", "complete", ".3f"),
    Column("p50_ms", "p50 ms", ".2f"),
    Column("p90_ms", "p90 ms", ".2f"),
    Column("p99_ms", "p99 ms", ".2f"),
    Column("p999_ms", "p99.9 ms", ".2f"),
    Column("max_ms", "max ms", ".1f"),
    Column("server_cpu", "server CPU", ".2f"),
    Column("server_anon_mb", "anon MB", ".0f"),
    Column("buffered_mb", "buffered MB", ".1f"),
)
#: ``fanout``'s table: live rows and drain rows (a cell a row lacks prints "-").
FANOUT_COLUMNS = (
    Column("system", "system"),
    Column("kind", "kind"),
    *COLUMNS[:2],
    Column("records", "drained", ",.0f"),
    Column("seconds", "drain s", ".2f"),
    *COLUMNS[2:],
)


def _timing(options: Options) -> tuple[float, float]:
    return options.timing(DURATION, WARMUP, QUICK_DURATION, QUICK_WARMUP)


def smoke(options: Options) -> bool:
    """True for a run too short to measure anything (``SMOKE_DURATION``): the smoke tests'."""
    return options.duration is not None and options.duration < SMOKE_DURATION


def _live(rows: list[Row], rate: int, subscribers: int) -> Row | None:
    return next(
        (
            r
            for r in rows
            if r.get("kind") == "live" and (r["rate"], r["subscribers"]) == (rate, subscribers)
        ),
        None,
    )


def run_fanout(options: Options) -> ScenarioResult:
    duration, warmup = _timing(options)
    configurations = QUICK_CONFIGURATIONS if options.quick else CONFIGURATIONS
    drained = options.records or (QUICK_DRAIN_RECORDS if options.quick else DRAIN_RECORDS)
    readers = DRAIN_SUBSCRIBERS
    if smoke(options):
        configurations, readers = SMOKE_CONFIGURATIONS, SMOKE_DRAIN_SUBSCRIBERS
    result = ScenarioResult(
        parameters={
            "record_bytes": RECORD_BYTES,
            "shards": 1,
            "duration_s": duration,
            "warmup_s": warmup,
            "configurations": configurations,
            "producer": "open loop, a PutRecords per group of records due together",
            "subscribers": "one process each, Client.subscribe_to_shard from LATEST",
            "drain": {
                "records": -(-drained // FILL_BATCH) * FILL_BATCH,
                "subscribers": readers,
                "fill": "before timing: PutRecords of 500 pre-encoded, 8 in flight",
                "readers": "one process each, SubscribeToShard from TRIM_HORIZON at a "
                "common start, records counted from each event's array header",
            },
        },
        columns=FANOUT_COLUMNS,
    )
    steps: list[tuple[str, int, int]] = [("live", rate, n) for rate, n in configurations]
    steps.append(("drain", drained, readers))
    for kind, amount, subscribers in options.steps(steps, "fanout"):
        if kind == "live":
            with options.section(f"fanout {amount} rec/s x {subscribers}"):
                row = measure(options, Run(amount, subscribers, False), duration, warmup)
        else:
            with options.section(f"drain {amount} records x {subscribers}"):
                row = drain(options, amount, subscribers)
        result.rows.append(row)
    throughput = _live(result.rows, GOAL_RATE, GOAL_SUBSCRIBERS)
    latency = _live(result.rows, GOAL_LATENCY_RATE, GOAL_SUBSCRIBERS)
    ours_drain = next((r for r in result.rows if r.get("kind") == "drain"), None)
    peer_goals = []
    if options.peers and not smoke(options) and throughput is not None and ours_drain:
        # Python readers of the peers fall behind at this rate and drain their backlog
        # afterwards: a quick run keeps their window short to stay under a minute.
        window = (QUICK_PEER_WARMUP, QUICK_PEER_DURATION) if options.quick else (warmup, duration)
        live_peers = suite.fanout_live_rows(
            options, GOAL_RATE, GOAL_SUBSCRIBERS, *window, throughput["delivered_total"]
        )
        drain_peers = suite.drain_rows(options, drained, readers, ours_drain["delivered_total"])
        result.rows += live_peers + drain_peers
        for rows, what in ((live_peers, "live"), (drain_peers, "from a pre-filled stream")):
            redis = next((r for r in rows if str(r.get("system")).startswith("Redis")), {})
            peer_goals.append(
                Goal(
                    f"10 readers, {what}: shardline delivers >= 3 x Redis Streams' XREAD readers",
                    GOAL_VS_REDIS,
                    redis.get("shardline_ratio"),
                )
            )
    result.goals = [
        Goal(
            "10 subscribers each receive >= 200,000 records/s (slowest subscriber)",
            GOAL_RATE,
            None if throughput is None else throughput["per_subscriber_min"],
        ),
        Goal(
            "latency p50 <= 2 ms at 1,000 records/s with 10 subscribers",
            GOAL_P50_MS,
            None if latency is None else latency["p50_ms"],
            at_most=True,
        ),
        Goal(
            "latency p99 <= 10 ms at 1,000 records/s with 10 subscribers",
            GOAL_P99_MS,
            None if latency is None else latency["p99_ms"],
            at_most=True,
        ),
        *peer_goals,
    ]
    result.notes.append(
        "live: latency from each record's due time (fixed schedule) to its decoding in the "
        "subscriber process; complete: the slowest subscriber's share of the records due"
    )
    result.notes.append(
        "drain: subscribers reading a stream filled before timing, from TRIM_HORIZON at a "
        "common start; rec/s over the slowest subscriber's time, read from LMDB"
    )
    return result


#: The isolation scenario's rate: half of fanout's 200,000, because at 200,000 records/s
#: ten subscriber processes, the producer and the broker already use both cores of
#: this machine, and a run there measures the CPU's saturation, not a slow reader's effect
#: (docs/performance-notes.md has a run at 200,000 too).
ISOLATION_RATE = 100_000
ISOLATION_ROUNDS = 3


def run_isolation(options: Options) -> ScenarioResult:
    duration, warmup = _timing(options)
    rate = ISOLATION_RATE
    result = ScenarioResult(
        parameters={
            "record_bytes": RECORD_BYTES,
            "rate": rate,
            "subscribers": 9,
            "slow_subscriber": "one more, sleeping 0.2 s after each event (about 1 % of the rate)",
            "duration_s": duration,
            "warmup_s": warmup,
            "rounds": options.rounds or (1 if options.quick else ISOLATION_ROUNDS),
            "comparison": "medians over the rounds, nine alone against nine beside the slow one",
        },
        columns=COLUMNS,
    )
    # Alternating runs, compared by their medians: one pair on this shared machine
    # swings by tens of percent in p99 either way (ISOLATION_ROUNDS pairs).
    rounds = options.rounds or (1 if options.quick else ISOLATION_ROUNDS)
    alone_rows: list[Row] = []
    slowed_rows: list[Row] = []
    for _ in options.steps(range(rounds), "isolation rounds"):
        alone_rows.append(measure(options, Run(rate, 9, False), duration, warmup))
        slowed_rows.append(measure(options, Run(rate, 9, True), duration, warmup))
    result.rows += alone_rows + slowed_rows

    def median(rows: list[Row], key: str) -> float:
        return float(statistics.median(row[key] or 0 for row in rows))

    loss = 1 - median(slowed_rows, "per_subscriber_min") / median(alone_rows, "per_subscriber_min")
    p99_growth = median(slowed_rows, "p99_ms") / (median(alone_rows, "p99_ms") or 1) - 1
    slowed = max(slowed_rows, key=lambda row: row["server_anon_mb"] or 0)
    result.goals = [
        Goal(
            "the others' rate loss with a slow subscriber < 10 %",
            ISOLATION_LOSS,
            loss,
            at_most=True,
        ),
        Goal(
            "the others' p99 growth with a slow subscriber < 10 %",
            ISOLATION_LOSS,
            p99_growth,
            at_most=True,
        ),
        Goal(
            "broker anonymous memory with a slow subscriber < 300 MB (largest run)",
            ISOLATION_MEMORY_MB,
            slowed["server_anon_mb"],
            at_most=True,
        ),
    ]
    return result


FANOUT = Scenario(
    "fanout",
    "push delivery to 1-20 subscribers at fixed rates, and 10 draining a pre-filled stream",
    run_fanout,
)
ISOLATION = Scenario(
    "isolation",
    "nine subscribers beside one that reads at 1 % of the rate",
    run_isolation,
    repeats=1,  # alternating rounds inside, medians over them
)
