"""Scenario ``poll-read``: GetRecords records/s from one shard, over the wire.

The bench process fills shard 0 of a one-shard stream with ``records`` (default
``RECORDS``) records of ``RECORD_BYTES`` bytes straight through the log
(appends of ``FILL_BATCH`` records, durable), closes it, then starts a broker
server (``shardline serve``, its own process) on that data directory. A reader
process (one Client, one HTTP/2 connection) then makes ``passes`` passes over
the shard: GetShardIterator TRIM_HORIZON, then GetRecords with Limit 10,000,
following NextShardIterator until it has every record. Each pass's records/s
counts from the GetShardIterator call to the last response decoded; a row
gives the best and the median pass.

Three rows, three ways to read the same shard:

* ``wire``: ``Client.read_pages(...).wire_maps()``: compact answers (the
  stored batches forwarded), the next page requested while this one is
  decoded; every record a Python ``[arrival_ms, key, data]``. The broker's
  read path with the least client work; the goal is checked on this row.
* ``client``: the same pages decoded into typed ``Record`` tuples with
  sequence-number strings: what ``async for page in pages`` gives.
* ``maps``: one ``GetRecords`` at a time for the Kinesis-shaped answer (one
  map per record, what an AWS-style client reads), decoded by
  ``Client.call`` with nothing built on top.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import trio

from broker.client import Client
from broker.log import LogConfig, open_log

from .. import workload
from ..broker_process import broker_server, run_child
from ..scenario import Column, Goal, Options, Row, Scenario, ScenarioResult, scratch_directory

STREAM = "poll"
RECORDS = 2_000_000
QUICK_RECORDS = 200_000
RECORD_BYTES = 100
FILL_BATCH = 500  # records per stored batch: one PutRecords' worth for one shard
LIMIT = 10_000
PASSES = 5
QUICK_PASSES = 2

GOAL_RATE = 1_000_000
FORMS = ("wire", "client", "maps")


async def _fill(data: str, records: int) -> None:
    batch = workload.make_records(FILL_BATCH, RECORD_BYTES, seed=3)
    async with open_log(data, LogConfig()) as log:
        desc = await log.create_stream(STREAM, 1)
        for start in range(0, records, FILL_BATCH):
            chunk = batch[: min(FILL_BATCH, records - start)]
            await log.append(STREAM, {0: chunk}, incarnation=desc.incarnation)


# -- the reader (a child process) ---------------------------------------------


async def read_passes(endpoint: str, records: int, passes: int, form: str) -> dict[str, Any]:
    results: list[dict[str, float]] = []
    async with Client(endpoint) as client:
        for _ in range(passes):
            cpu0, t0 = time.process_time(), time.perf_counter()
            it = await client.call(
                "GetShardIterator",
                {
                    "StreamName": STREAM,
                    "ShardId": "shardId-000000000000",
                    "ShardIteratorType": "TRIM_HORIZON",
                },
            )
            iterator = it["ShardIterator"]
            got = calls = 0
            if form == "maps":
                while got < records:
                    response = await client.call(
                        "GetRecords", {"ShardIterator": iterator, "Limit": LIMIT}
                    )
                    got += len(response["Records"])
                    iterator = response["NextShardIterator"]
                    calls += 1
            elif form == "wire":
                async with client.read_pages(iterator, limit=LIMIT) as pages:
                    async for body in pages.wire_maps():
                        got += sum(len(batch["Records"]) for batch in body["Batches"])
                        calls += 1
                        if got >= records:
                            break
            else:
                async with client.read_pages(iterator, limit=LIMIT) as pages:
                    async for page in pages:
                        got += len(page.records)
                        calls += 1
                        if got >= records:
                            break
            seconds = time.perf_counter() - t0
            results.append(
                {
                    "seconds": seconds,
                    "records": got,
                    "calls": calls,
                    "records_per_s": got / seconds,
                    "reader_cpu": (time.process_time() - cpu0) / seconds,
                }
            )
    return {"passes": results}


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="poll-read reader")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--passes", type=int, default=PASSES)
    parser.add_argument("--form", choices=FORMS, default=FORMS[0])
    args = parser.parse_args(argv)
    out = trio.run(read_passes, args.endpoint, args.records, args.passes, args.form)
    print(json.dumps(out), flush=True)


# -- the scenario (the parent) -------------------------------------------------


def _measure(options: Options, records: int, passes: int) -> list[Row]:
    rows: list[Row] = []
    with scratch_directory(options, "poll-read") as tmp:
        data = os.path.join(tmp, "data")
        t0 = time.perf_counter()
        trio.run(_fill, data, records)
        fill_s = time.perf_counter() - t0
        with options.section("poll-read"), broker_server(data) as server:
            for form in FORMS:
                cpu0 = server.cpu_seconds()
                out = run_child(
                    "bench.scenarios.poll_read",
                    "--endpoint",
                    server.endpoint,
                    "--records",
                    str(records),
                    "--passes",
                    str(passes),
                    "--form",
                    form,
                )
                cpu1 = server.cpu_seconds()
                rows.append(_row(form, out["passes"], records, fill_s, cpu0, cpu1))
    return rows


def _row(
    form: str,
    runs: list[dict[str, float]],
    records: int,
    fill_s: float,
    cpu0: float | None,
    cpu1: float | None,
) -> Row:
    rates = [r["records_per_s"] for r in runs]
    seconds = sum(r["seconds"] for r in runs)
    row: Row = {
        "form": form,
        "records": records,
        "passes": len(runs),
        "records_per_s_best": max(rates),
        "records_per_s_median": statistics.median(rates),
        "mb_per_s_median": statistics.median(rates) * RECORD_BYTES / 1e6,
        "calls_per_pass": runs[0]["calls"],
        "reader_cpu": statistics.median(r["reader_cpu"] for r in runs),
        "server_cpu": None,
        "fill_s": fill_s,
        "pass_rates": [round(r) for r in rates],
    }
    if cpu0 is not None and cpu1 is not None:
        row["server_cpu"] = (cpu1 - cpu0) / seconds
    return row


COLUMNS = (
    Column("form", "form"),
    Column("records", "records"),
    Column("passes", "passes"),
    Column("records_per_s_median", "median records/s", ",.0f"),
    Column("records_per_s_best", "best records/s", ",.0f"),
    Column("mb_per_s_median", "MB/s", ",.1f"),
    Column("calls_per_pass", "calls/pass"),
    Column("server_cpu", "server CPU", ".2f"),
    Column("reader_cpu", "reader CPU", ".2f"),
)


def run(options: Options) -> ScenarioResult:
    records = options.records or (QUICK_RECORDS if options.quick else RECORDS)
    passes = options.passes or (QUICK_PASSES if options.quick else PASSES)
    result = ScenarioResult(
        parameters={
            "records": records,
            "record_bytes": RECORD_BYTES,
            "limit": LIMIT,
            "passes": passes,
            "fill": f"through the log, appends of {FILL_BATCH} records to shard 0",
            "server": "shardline serve in its own process, default settings",
            "reader": "a separate process: one Client, one HTTP/2 connection, one call at a time",
        },
        columns=COLUMNS,
    )
    result.rows.extend(_measure(options, records, passes))
    wire = result.rows[0]
    result.goals = [
        Goal(
            "GetRecords records/s >= 1,000,000 (median pass, read_pages wire maps)",
            GOAL_RATE,
            wire["records_per_s_median"],
        ),
    ]
    result.notes.append(
        "server CPU: server CPU seconds per second of the passes (1.00 = one core), "
        "the server's start-up excluded"
    )
    return result


SCENARIO = Scenario("poll-read", "GetRecords records/s from one shard over one connection", run)
