"""Scenario ``log-append``: durable appends through the group commit, against raw LMDB.

For each record size (100 B, 1 KiB) and each number of concurrent appenders
(1, 8, 64): a fresh log with one stream of ``SHARDS`` shards; appender ``i``
(a trio task) appends the same pre-built ``RECORDS_PER_APPEND`` records to
shard ``i % SHARDS`` in a loop, each call waiting for its durable commit.
Records acknowledged during the measured time give records/s and MB/s (record
data bytes); the log's counters give the mean appends and records per durable
commit, and a commit listener the stored batch values per commit (appends to
one shard in one commit share one stored value).

The baseline: raw py-lmdb committing the value the log stores for one append
(``pack_segment`` + ``build_value``, built before timing), ``N`` values per
durable commit, ``N`` being the mean number of appends per commit that the
group commit achieved so far in the same configuration.

This disk's fsync latency drifts by 2x over tens of seconds, so the log and its
baseline are measured in alternating rounds (log, baseline, log, ...), each
side ``duration / rounds`` seconds per round, both environments staying open;
the appenders wait at a gate while the baseline runs. The first round of each
side starts with an unmeasured warm-up. ``--rounds 1`` measures each side in
one continuous stretch. Raw LMDB also slows as its file grows (here from about
4 M to about 2 M records/s over the first 12 s at 60 values per commit), so the
first round's ratio is usually the lowest: the row carries each round's figures
and the median round ratio beside the overall one.

To profile: ``shardline bench log-append --sizes 100 --appenders 64 --rounds 1
--no-baseline --profile`` (cProfile, every thread), or the same command under
``py-spy record --threads -f raw`` and ``python -m bench.profiling FILE``.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import trio

from broker.log import CommitReport, Log, LogConfig, open_log

from .. import rawlmdb, workload
from ..scenario import (
    Column,
    Goal,
    Options,
    Row,
    Scenario,
    ScenarioResult,
    ratio,
    scratch_directory,
)

SHARDS = 8
RECORDS_PER_APPEND = 500
APPENDERS = (1, 8, 64)
SIZES = (100, 1024)
DURATION = 10.0
ROUNDS = 5
WARMUP = 1.0
QUICK_DURATION = 1.5
QUICK_ROUNDS = 2
QUICK_WARMUP = 0.3
STREAM = "bench"

GOAL_RATE_64 = 1_200_000
GOAL_RATIO_64 = 0.5
GOAL_RATIO_1 = 0.8


@dataclass(frozen=True, slots=True)
class _Plan:
    duration: float
    rounds: int
    warmup: float

    @classmethod
    def of(cls, options: Options) -> _Plan:
        quick = options.quick
        duration = options.duration or (QUICK_DURATION if quick else DURATION)
        rounds = options.rounds or (QUICK_ROUNDS if quick else ROUNDS)
        warmup = QUICK_WARMUP if quick else WARMUP
        return cls(duration, rounds, warmup if options.warmup is None else options.warmup)

    @property
    def slice(self) -> float:
        return self.duration / self.rounds


@dataclass(slots=True)
class _Counters:
    records: int = 0
    stored_values: int = 0
    stored_records: int = 0
    stored_bytes: int = 0

    def on_commit(self, report: CommitReport) -> None:
        for stored in report.batches:
            self.stored_values += 1
            self.stored_records += stored.count
            self.stored_bytes += len(stored.value)


@dataclass(frozen=True, slots=True)
class _Mark:
    """The log's counters at one moment; the difference of two is a measured slice."""

    time: float
    records: int
    commits: int
    appends: int
    stored_values: int
    stored_records: int
    stored_bytes: int

    @classmethod
    def take(cls, log: Log, counters: _Counters) -> _Mark:
        stats = log.statistics()
        return cls(
            time.perf_counter(),
            counters.records,
            stats["commits"],
            stats["committed_ops"],
            counters.stored_values,
            counters.stored_records,
            counters.stored_bytes,
        )

    def __sub__(self, other: _Mark) -> _Mark:
        return _Mark(
            self.time - other.time,
            self.records - other.records,
            self.commits - other.commits,
            self.appends - other.appends,
            self.stored_values - other.stored_values,
            self.stored_records - other.stored_records,
            self.stored_bytes - other.stored_bytes,
        )

    def __add__(self, other: _Mark) -> _Mark:
        return _Mark(
            self.time + other.time,
            self.records + other.records,
            self.commits + other.commits,
            self.appends + other.appends,
            self.stored_values + other.stored_values,
            self.stored_records + other.stored_records,
            self.stored_bytes + other.stored_bytes,
        )


ZERO = _Mark(0.0, 0, 0, 0, 0, 0, 0)


@dataclass(slots=True)
class _Gate:
    """Appenders pass while it is open; closing it lets the baseline have the disk."""

    opened: trio.Event = field(default_factory=trio.Event)

    def open(self) -> None:
        self.opened.set()

    def close(self) -> None:
        if self.opened.is_set():
            self.opened = trio.Event()


async def _appender(
    log: Log,
    incarnation: int,
    shard: int,
    records: list[tuple[str, bytes]],
    counters: _Counters,
    gate: _Gate,
) -> None:
    batch = {shard: records}
    count = len(records)
    while True:
        if not gate.opened.is_set():
            await gate.opened.wait()
        await log.append(STREAM, batch, incarnation=incarnation)
        counters.records += count


def _inputs(size: int, appenders: int) -> list[list[tuple[str, bytes]]]:
    return [workload.make_records(RECORDS_PER_APPEND, size, seed=i) for i in range(appenders)]


async def _rounds(
    tmp: str, size: int, appenders: int, plan: _Plan, baseline: bool
) -> tuple[list[_Mark], list[rawlmdb.WriteRun]]:
    inputs = _inputs(size, appenders)
    shards_used = min(appenders, SHARDS)
    raw: rawlmdb.RawWriter | None = None
    if baseline:
        values = [workload.make_value(records) for records in inputs[:shards_used]]
        raw = rawlmdb.RawWriter(os.path.join(tmp, "raw"), values, RECORDS_PER_APPEND, shards_used)
    slices: list[_Mark] = []
    runs: list[rawlmdb.WriteRun] = []
    counters = _Counters()
    gate = _Gate()
    try:
        async with open_log(os.path.join(tmp, "log"), LogConfig()) as log:
            desc = await log.create_stream(STREAM, SHARDS)
            log.add_commit_listener(counters.on_commit)
            async with trio.open_nursery() as nursery:
                for i, records in enumerate(inputs):
                    nursery.start_soon(
                        _appender, log, desc.incarnation, i % SHARDS, records, counters, gate
                    )
                for k in range(plan.rounds):
                    warmup = plan.warmup if k == 0 else 0.0
                    gate.open()
                    await trio.sleep(warmup)
                    first = _Mark.take(log, counters)
                    await trio.sleep(plan.slice)
                    slices.append(_Mark.take(log, counters) - first)
                    if raw is not None:
                        gate.close()
                        await log.wait_idle()
                        total = sum(slices, ZERO)
                        per_commit = total.appends / max(1, total.commits)
                        runs.append(
                            raw.run(per_commit=per_commit, warmup=warmup, duration=plan.slice)
                        )
                nursery.cancel_scope.cancel()
    finally:
        if raw is not None:
            raw.close()
    return slices, runs


def _rate(records: int, seconds: float) -> float:
    return records / seconds if seconds > 0 else 0.0


def _measure(options: Options, size: int, appenders: int, plan: _Plan) -> Row:
    label = f"{size}B-{appenders}appenders"
    with scratch_directory(options, label) as tmp, options.section(label):
        slices, runs = trio.run(_rounds, tmp, size, appenders, plan, options.baseline)
    log = sum(slices, ZERO)
    commits = max(1, log.commits)
    row: Row = {
        "size": size,
        "appenders": appenders,
        "seconds": round(log.time, 3),
        "records": log.records,
        "records_per_s": _rate(log.records, log.time),
        "mb_per_s": _rate(log.records * size, log.time) / 1e6,
        "commits": log.commits,
        "commits_per_s": _rate(log.commits, log.time),
        "records_per_commit": log.stored_records / commits,
        "appends_per_commit": log.appends / commits,
        "stored_values_per_commit": log.stored_values / commits,
        "stored_mb_per_s": _rate(log.stored_bytes, log.time) / 1e6,
        "baseline_records_per_s": None,
        "baseline_mb_per_s": None,
        "baseline_values_per_commit": None,
        "baseline_commits_per_s": None,
        "ratio": None,
        "ratio_median_round": None,
        "rounds": [{"records_per_s": round(_rate(s.records, s.time))} for s in slices],
    }
    if runs:
        row.update(_baseline_figures(size, runs))
        row["ratio"] = ratio(row["records_per_s"], row["baseline_records_per_s"])
        ratios: list[float] = []
        for entry, slice_, run in zip(row["rounds"], slices, runs, strict=True):
            base = _rate(run.records, run.seconds)
            entry["baseline_records_per_s"] = round(base)
            r = ratio(_rate(slice_.records, slice_.time), base)
            entry["ratio"] = r
            if r is not None:
                ratios.append(r)
        row["ratio_median_round"] = statistics.median(ratios) if ratios else None
    return row


def _baseline_figures(size: int, runs: list[rawlmdb.WriteRun]) -> dict[str, Any]:
    seconds = sum(r.seconds for r in runs)
    records = sum(r.records for r in runs)
    commits = sum(r.commits for r in runs)
    return {
        "baseline_records_per_s": _rate(records, seconds),
        "baseline_mb_per_s": _rate(records * size, seconds) / 1e6,
        "baseline_values_per_commit": sum(r.values for r in runs) / max(1, commits),
        "baseline_commits_per_s": _rate(commits, seconds),
    }


def _goals(rows: list[Row]) -> list[Goal]:
    by = {(r["size"], r["appenders"]): r for r in rows}
    goals: list[Goal] = []
    r64 = by.get((100, 64))
    if r64 is not None:
        goals.append(
            Goal("100 B, 64 appenders: records/s >= 1,200,000", GOAL_RATE_64, r64["records_per_s"])
        )
        goals.append(Goal("100 B, 64 appenders: >= 0.5 x baseline", GOAL_RATIO_64, r64["ratio"]))
    r1 = by.get((100, 1))
    if r1 is not None:
        goals.append(Goal("100 B, 1 appender: >= 0.8 x baseline", GOAL_RATIO_1, r1["ratio"]))
    return goals


COLUMNS = (
    Column("size", "size B"),
    Column("appenders", "appenders"),
    Column("records_per_s", "records/s", ",.0f"),
    Column("mb_per_s", "MB/s", ",.1f"),
    Column("commits_per_s", "commits/s", ",.0f"),
    Column("records_per_commit", "rec/commit", ",.0f"),
    Column("appends_per_commit", "values/commit", ".2f"),
    Column("stored_values_per_commit", "stored/commit", ".2f"),
    Column("baseline_records_per_s", "baseline rec/s", ",.0f"),
    Column("baseline_mb_per_s", "baseline MB/s", ",.1f"),
    Column("ratio", "ratio", ".2f"),
    Column("ratio_median_round", "median round ratio", ".2f"),
)


def run(options: Options) -> ScenarioResult:
    sizes = options.sizes or SIZES
    appenders = options.appenders or APPENDERS
    plan = _Plan.of(options)
    result = ScenarioResult(
        parameters={
            "sizes": list(sizes),
            "appenders": list(appenders),
            "shards": SHARDS,
            "records_per_append": RECORDS_PER_APPEND,
            "routing": f"pre-routed: appender i appends to shard i % {SHARDS} (no hashing)",
            "duration_s": plan.duration,
            "rounds": plan.rounds,
            "round_s": plan.slice,
            "warmup_s": plan.warmup,
            "log_config": "LogConfig() defaults (map starts at 256 MiB and doubles)",
            "baseline": (
                "raw py-lmdb, fresh environment, sync+metasync, no writemap; the value "
                "the log stores for one 500-record append, N per durable commit, round-robin "
                f"over min(appenders, {SHARDS}) shards; N = the log's mean appends per commit "
                "so far in the same configuration; rounds alternate log and baseline"
            ),
        },
        columns=COLUMNS,
    )
    for size in sizes:
        for n in appenders:
            result.rows.append(_measure(options, size, n, plan))
    result.goals = _goals(result.rows)
    result.notes.append(
        "values/commit: 500-record appends per durable commit (the baseline's N); "
        "stored/commit: LMDB values the log wrote per commit (one per shard touched); "
        "ratio: records/s over baseline records/s, all rounds together"
    )
    return result


SCENARIO = Scenario(
    "log-append",
    "durable appends of 500-record calls by 1/8/64 concurrent appenders vs raw py-lmdb",
    run,
    repeats=1,  # alternating rounds inside, medians over them
)
