"""Scenario ``latency``: delivery latency at fixed offered rates, from each record's due time.

For each configuration (offered records/s, subscribers), a fresh broker
server, a one-shard stream, one registered consumer and one subscriber
process per subscriber, and a producer process that writes 100 B records on
a **fixed schedule**, exactly as ``fanout`` measures (``fanout.measure``,
whose docstring has the details): every record carries the time it was
*due*, and a subscriber's latency for it runs from that time to the moment
the subscriber process read it out of the pushed event. The producer sends
each group at its due time whatever happened to the previous ones (open
loop), so a stall of the producer, the broker or a subscriber is counted
against every record it delays: no coordinated omission.

Per configuration, over every record due inside the measured window (after
a warm-up) and delivered to any subscriber: p50/p90/p99/p99.9/max and a CDF
(``bench.latency.summarize``, numpy), the slowest subscriber's share of the
records due (``complete``), the records delivered per second in total, the
broker's CPU per second, and how many of the producer's groups went out
more than 1 ms after their due time (``late_groups``: the load generator's
own lateness, which the latencies include).

Readers: shardline's subscribers read with the blocking
``SyncClient.subscribe_to_shard`` (``system`` "shardline"), as the peers'
Redis readers use redis-py's blocking client: each process reads its socket
in its own thread, with no event loop between the socket and the count. At
the configurations with 10 subscribers a second row (``system`` "shardline,
trio Client") measures the same with the async ``Client.subscribe_to_shard``
in trio, for code that lives in an event loop.

Peers: the rows are shardline's (``shardline_rows``); a peer's rows measured
with the same schedule and the same summary go beside them with their own
``system``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..peers import suite
from ..scenario import Column, Goal, Options, Row, Scenario, ScenarioResult
from . import fanout, fanout_clients

#: (offered records/s, subscribers).
CONFIGURATIONS: tuple[tuple[int, int], ...] = tuple(
    (rate, n) for rate in (1_000, 10_000, 100_000) for n in (1, 10)
)
QUICK_CONFIGURATIONS: tuple[tuple[int, int], ...] = ((1_000, 1), (1_000, 10), (10_000, 10))
#: For runs shorter than ``fanout.SMOKE_DURATION`` (the smoke tests): the fewest processes.
SMOKE_CONFIGURATIONS: tuple[tuple[int, int], ...] = ((1_000, 1), (1_000, 2))
DURATION = 10.0
WARMUP = 2.0
QUICK_DURATION = 2.0
QUICK_WARMUP = 1.0

#: The ``system`` of shardline's rows, by the subscribers' client.
SYSTEM = "shardline"
TRIO_SYSTEM = "shardline, trio Client"
#: Configurations with this many subscribers are also measured with the trio client.
TRIO_SUBSCRIBERS = 10

GOAL_RATE = 1_000
GOAL_SUBSCRIBERS = 10
GOAL_P99_MS = 10.0

#: The keys of a row, after ``system``.
ROW_KEYS = (
    "rate",
    "subscribers",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "cdf_ms",
    "complete",
    "delivered_total",
    "server_cpu",
    "late_groups",
    "failed_records",
)

COLUMNS = (
    Column("system", "system"),
    Column("rate", "rate rec/s", ",.0f"),
    Column("subscribers", "subs"),
    Column("p50_ms", "p50 ms", ".2f"),
    Column("p90_ms", "p90 ms", ".2f"),
    Column("p99_ms", "p99 ms", ".2f"),
    Column("p999_ms", "p99.9 ms", ".2f"),
    Column("max_ms", "max ms", ".1f"),
    Column("complete", "complete", ".3f"),
    Column("delivered_total", "delivered rec/s", ",.0f"),
    Column("server_cpu", "server CPU", ".2f"),
    Column("late_groups", "late groups"),
)


def shardline_rows(
    options: Options,
    configurations: Sequence[tuple[int, int]],
    duration: float,
    warmup: float,
) -> list[Row]:
    """One row per (rate, subscribers, reader), each on a fresh broker (``fanout.measure``).

    Keys: ``system`` (``SYSTEM``: blocking subscribers; ``TRIO_SYSTEM``: the
    trio client, with ``TRIO_SUBSCRIBERS`` subscribers) and ``ROW_KEYS``.
    """
    runs = [
        (system, rate, subscribers)
        for rate, subscribers in configurations
        for system in (SYSTEM, TRIO_SYSTEM)
        if system == SYSTEM or subscribers == TRIO_SUBSCRIBERS
    ]
    rows: list[Row] = []
    for system, rate, subscribers in options.steps(runs, "latency"):
        with options.section(f"latency {rate} rec/s x {subscribers}, {system}"):
            measured = fanout.measure(
                options,
                fanout.Run(rate, subscribers, False, blocking=system == SYSTEM),
                duration,
                warmup,
            )
        rows.append({"system": system, **{key: measured[key] for key in ROW_KEYS}})
    return rows


def _peer_rows(options: Options, ours: list[Row], duration: float, warmup: float) -> list[Row]:
    """Redis Streams and NATS JetStream readers, same method, at each rate with 10 readers."""
    rows: list[Row] = []
    chosen = [r for r in ours if r["subscribers"] == GOAL_SUBSCRIBERS and r["system"] == SYSTEM]
    for row in options.steps(chosen, "latency, peers"):
        rows += suite.latency_rows(
            options, row["rate"], row["subscribers"], warmup, duration, row["p99_ms"]
        )
    return rows


def _timing(options: Options) -> tuple[float, float]:
    return options.timing(DURATION, WARMUP, QUICK_DURATION, QUICK_WARMUP)


def run(options: Options) -> ScenarioResult:
    duration, warmup = _timing(options)
    configurations = QUICK_CONFIGURATIONS if options.quick else CONFIGURATIONS
    if fanout.smoke(options):
        configurations = SMOKE_CONFIGURATIONS
    result = ScenarioResult(
        parameters={
            "record_bytes": fanout_clients.RECORD_BYTES,
            "shards": 1,
            "duration_s": duration,
            "warmup_s": warmup,
            "configurations": [list(c) for c in configurations],
            "producer": "open loop on a fixed schedule, a PutRecords per group due together",
            "subscribers": (
                "one process each from LATEST: SyncClient.subscribe_to_shard (blocking); "
                f"with {TRIO_SUBSCRIBERS}, also Client.subscribe_to_shard in trio"
            ),
            "latency": "from each record's due time to its reading in the subscriber process",
        },
        columns=COLUMNS,
    )
    result.rows.extend(shardline_rows(options, configurations, duration, warmup))
    if options.peers and not fanout.smoke(options):
        result.rows.extend(_peer_rows(options, list(result.rows), duration, warmup))
    at_goal = next(
        (
            r
            for r in result.rows
            if r["system"] == SYSTEM
            and (r["rate"], r["subscribers"]) == (GOAL_RATE, GOAL_SUBSCRIBERS)
        ),
        None,
    )
    result.goals.append(
        Goal(
            "latency p99 <= 10 ms at 1,000 records/s with 10 subscribers",
            GOAL_P99_MS,
            None if at_goal is None else at_goal["p99_ms"],
            at_most=True,
        )
    )
    redis = next(
        (
            r
            for r in result.rows
            if str(r.get("system")).startswith("Redis")
            and (r.get("rate"), r.get("subscribers")) == (GOAL_RATE, GOAL_SUBSCRIBERS)
            and r.get("p99_ms") is not None
        ),
        None,
    )
    if options.peers and at_goal is not None:
        result.goals.append(
            Goal(
                "p99 at 1,000 records/s with 10 subscribers: shardline / Redis Streams <= 1",
                1.0,
                None if redis is None else at_goal["p99_ms"] / redis["p99_ms"],
                at_most=True,
            )
        )
    result.notes.append(
        "latency over every record due in the window and delivered, all subscribers "
        "together; complete: the slowest subscriber's share of the records due; "
        "late groups: producer groups sent > 1 ms after their due time (counted in the latency)"
    )
    return result


SCENARIO = Scenario(
    "latency",
    "latency from each record's due time to delivery at 1k-100k records/s, 1 and 10 subscribers",
    run,
)
