"""Scenario ``log-read``: reading a shard from TRIM_HORIZON to its end, records as tuples.

A fresh log gets one stream with one shard, filled with ``records`` records of
100 B through ``Log.append`` in 500-record calls. Two fills, two stored
layouts:

- ``1`` appender: every commit stores one 500-record value;
- ``16`` appenders: group commits join the appends of one commit into one
  larger value (thousands of records).

Then, ``passes`` times, the shard is read from ``TRIM_HORIZON`` to its end
with ``Log.read`` in chunks of ``CHUNK`` records (checksums verified, records
unpacked to tuples), from a warm page cache. The figure is the median pass.

The baseline, in the same run: the log closed, the same LMDB file opened with
raw py-lmdb, one cursor over every stored value, each payload unpacked with
``msgpack.unpackb`` (no checksum, no chunking).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

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

STREAM = "bench"
RECORDS = 3_000_000
QUICK_RECORDS = 300_000
RECORDS_PER_APPEND = 500
FILL_APPENDERS = (1, 16)
SIZE = 100
CHUNK = 10_000
PASSES = 3
QUICK_PASSES = 1
GOAL_RATE = 3_000_000


@dataclass(slots=True)
class _Fill:
    remaining: int
    values: int = 0
    records: int = 0

    def on_commit(self, report: CommitReport) -> None:
        for stored in report.batches:
            self.values += 1
            self.records += stored.count


async def _fill_appender(
    log: Log, incarnation: int, records: list[tuple[str, bytes]], fill: _Fill
) -> None:
    batch = {0: records}
    while fill.remaining > 0:
        fill.remaining -= len(records)
        await log.append(STREAM, batch, incarnation=incarnation)


def _read_pass(log: Log) -> tuple[int, float]:
    """Read the shard from TRIM_HORIZON to its end: (records read, seconds)."""
    end = log.tail(STREAM, 0).next_offset
    start = time.perf_counter()
    offset = log.resolve(STREAM, 0, "TRIM_HORIZON")
    count = 0
    while offset < end:
        result = log.read(STREAM, 0, offset, max_records=CHUNK)
        for chunk in result.chunks:
            count += len(chunk.records)
        offset = result.next_offset
    return count, time.perf_counter() - start


async def _fill_and_read(
    path: str, records: int, appenders: int, passes: int, options: Options, label: str
) -> tuple[_Fill, float, list[tuple[int, float]]]:
    inputs = [workload.make_records(RECORDS_PER_APPEND, SIZE, seed=i) for i in range(appenders)]
    fill = _Fill(records)
    async with open_log(path, LogConfig()) as log:
        desc = await log.create_stream(STREAM, 1)
        log.add_commit_listener(fill.on_commit)
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for recs in inputs:
                nursery.start_soon(_fill_appender, log, desc.incarnation, recs, fill)
        fill_seconds = time.perf_counter() - started
        with options.section(label):
            reads = [_read_pass(log) for _ in range(passes)]
    return fill, fill_seconds, reads


def _measure(options: Options, appenders: int) -> Row:
    records = options.records or (QUICK_RECORDS if options.quick else RECORDS)
    passes = options.passes or (QUICK_PASSES if options.quick else PASSES)
    label = f"read-{appenders}appenders-fill"
    with scratch_directory(options, label) as tmp:
        path = os.path.join(tmp, "log")
        fill, fill_seconds, reads = trio.run(
            _fill_and_read, path, records, appenders, passes, options, label
        )
        rates = [n / s for n, s in reads]
        row: Row = {
            "fill_appenders": appenders,
            "records": fill.records,
            "stored_values": fill.values,
            "records_per_value": fill.records / max(1, fill.values),
            "fill_records_per_s": fill.records / fill_seconds,
            "passes": [round(r) for r in rates],
            "records_per_s": statistics.median(rates),
            "mb_per_s": statistics.median(rates) * SIZE / 1e6,
            "baseline_records_per_s": None,
            "ratio": None,
        }
        wrong = [n for n, _ in reads if n != fill.records]
        if wrong:
            row["error"] = f"a pass read {wrong[0]} records, {fill.records} stored"
        if options.baseline:
            runs = [rawlmdb.read_values(path) for _ in range(passes)]
            row["baseline_passes"] = [round(r.records / r.seconds) for r in runs]
            row["baseline_records_per_s"] = statistics.median(r.records / r.seconds for r in runs)
            row["ratio"] = ratio(row["records_per_s"], row["baseline_records_per_s"])
    return row


COLUMNS = (
    Column("fill_appenders", "fill appenders"),
    Column("records", "records", ","),
    Column("records_per_value", "rec/value", ",.0f"),
    Column("records_per_s", "records/s", ",.0f"),
    Column("mb_per_s", "MB/s", ",.1f"),
    Column("baseline_records_per_s", "baseline rec/s", ",.0f"),
    Column("ratio", "ratio", ".2f"),
)


def run(options: Options) -> ScenarioResult:
    appenders = options.appenders or FILL_APPENDERS
    records = options.records or (QUICK_RECORDS if options.quick else RECORDS)
    passes = options.passes or (QUICK_PASSES if options.quick else PASSES)
    result = ScenarioResult(
        parameters={
            "records": records,
            "size": SIZE,
            "records_per_append": RECORDS_PER_APPEND,
            "fill_appenders": list(appenders),
            "shards": 1,
            "chunk_records": CHUNK,
            "passes": passes,
            "figure": "median pass, warm page cache",
            "log_config": "LogConfig() defaults",
            "baseline": (
                "raw py-lmdb on the same file after the log closed: one read txn, one cursor "
                "over every stored value, msgpack.unpackb(payload, use_list=False); "
                "no checksum, no chunking"
            ),
        },
        columns=COLUMNS,
    )
    for n in appenders:
        result.rows.append(_measure(options, n))
    for row in result.rows:
        result.goals.append(
            Goal(
                f"read, {row['records_per_value']:,.0f}-record values: records/s >= 3,000,000",
                GOAL_RATE,
                row["records_per_s"],
            )
        )
    return result


SCENARIO = Scenario(
    "log-read",
    "read one shard from TRIM_HORIZON to its end in 10,000-record chunks, as tuples",
    run,
)
