"""Scenario ``kinesis-api``: boto3 over Kinesis' own wire, against shardline and its emulators.

The question the issue asks: what does a Python program written for AWS get
from shardline when only ``endpoint_url`` changes, beside what it gets from
the emulators people run today, and beside what boto3 can do at all?

Every system gets the same load, a child process (``kinesis_api_clients``):
4 threads with a boto3 client each put ``500 x 100 B`` records per
``put_records`` call in closed loops for ``duration`` seconds after a
warm-up, then read the whole stream back with ``get_shard_iterator``
(TRIM_HORIZON) and ``get_records(Limit=10000)``, and check that every
acknowledged record came back once (count and digest: ``verified``). A
stream of ``SHARDS`` shards, created through the API by the load. Rows, one
per system, in this order within a repetition:

- **shardline**: ``shardline serve`` in its own process over a fresh data
  directory, default settings (an acknowledgement follows an fsync'd LMDB
  commit), the AWS JSON wire on the broker's port. A read-back that does not
  match is an ``error`` (the run fails): it is a correctness assertion.
- **null endpoint** (``bench.null_kinesis``): canned responses from a
  minimal HTTP/1.1 server, no work behind them, so its figures are boto3's own
  ceiling on this machine in this run: client cost only. Its read-back reads
  canned pages (``verified`` None). Skipped with ``--no-baseline``.
- **kinesalite** in memory (its default) and with ``--path`` (LevelDB),
  and **kinesis-mock** (npm ``kinesis-local``), from
  ``bench.peers.emulators``; with ``--no-peers`` they are skipped, and when
  node or a package is missing each gives an ``unavailable`` row that says how
  to install it (``make bench-emulators``). An emulator's failure is its
  ``peer_error`` row, not a failed run.

Ratios in each row are shardline's over that row's: ``shardline_ratio`` for
put records/s (emulators; above 1 shardline is ahead), ``ceiling_share``
(shardline put / the null endpoint's: the fraction of boto3's ceiling
reached) and ``get_ratio`` (get records/s). The goals: shardline put >= 3 x
the faster emulator, and >= 0.6 x the null endpoint, both of the same
repetition.

Server CPU is the server process's user+system seconds (``/proc``) per
second of the put window (warm-up excluded) and of the read-back, read when
the load says the window opened and closed; client CPU likewise for the load
process (all its threads; 1.0 is one core, and boto3 under the GIL cannot use
much more than one). ``other_cpu_put`` is what the rest of the machine was
busy with during the put window (``/proc/stat`` less server and client): on a
2-core machine shared with other work, a figure next to a high one is suspect.

To profile the client side: run ``python -m bench.null_kinesis``'s
``child_main(["--port", P])`` and the load against it under ``py-spy
record``: ``python -c "import sys; from bench.scenarios.kinesis_api_clients
import child_main; child_main(sys.argv[1:])" --endpoint http://127.0.0.1:P
--warmup 1 --duration 10``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator

from .. import children as procs
from ..broker_process import broker_server
from ..peers import PeerServer, PeerUnavailable, emulators, free_port, server_process
from ..scenario import Column, Goal, Options, Row, Scenario, ScenarioResult, scratch_directory
from . import kinesis_api_clients as load

CLIENTS = "bench.scenarios.kinesis_api_clients"
SHARDS = load.SHARDS
THREADS = load.THREADS
DURATION = 10.0
WARMUP = 2.0
QUICK_DURATION = 2.0
QUICK_WARMUP = 0.5
#: How long the load may take beyond its window (setup, the read-back).
CHILD_TIMEOUT_S = load.ACTIVE_TIMEOUT_S + load.READ_TIMEOUT_S + 60.0

GOAL_VS_EMULATOR = 3.0
GOAL_VS_CEILING = 0.6

SHARDLINE = "shardline"
NULL = "null endpoint (boto3's ceiling)"
KINESALITE = "kinesalite (in memory)"
KINESALITE_LEVELDB = "kinesalite (LevelDB, --path)"
KINESIS_MOCK = "kinesis-mock (kinesis-local)"
EMULATORS = (KINESALITE, KINESALITE_LEVELDB, KINESIS_MOCK)

CpuReader = Callable[[], float | None]


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes of the machine have been busy (``/proc/stat``; None off Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def measure(endpoint: str, server_cpu: CpuReader, warmup: float, duration: float) -> Row:
    """The load against ``endpoint``: its figures, with the server's CPU per phase."""
    with procs.reaped() as children:
        child = procs.spawn(
            CLIENTS,
            endpoint=endpoint,
            shards=SHARDS,
            threads=THREADS,
            warmup=warmup,
            duration=duration,
        )
        children.append(child)
        procs.expect(child, "ready", "the kinesis-api load")
        procs.expect(child, "window", "the kinesis-api load")
        cpu0, busy0 = server_cpu(), machine_busy_seconds()
        procs.expect(child, "closed", "the kinesis-api load")
        cpu1, busy1 = server_cpu(), machine_busy_seconds()
        procs.expect(child, "reading", "the kinesis-api load")
        cpu2 = server_cpu()
        procs.expect(child, "read", "the kinesis-api load")
        cpu3 = server_cpu()
        out = procs.last_json(child, CHILD_TIMEOUT_S, "the kinesis-api load")
    row: Row = {
        "put_records_per_s": out["put_records_per_s"],
        "put_mb_per_s": out["put_records_per_s"] * load.RECORD_BYTES / 1e6,
        "put_requests_per_s": out["put_requests_per_s"],
        "get_records_per_s": out["get_records_per_s"],
        "verified": bool(out["count_matches"] and out["digest_matches"]),
        "records_put": out["records_put"],
        "records_read": out["records_read"],
        "failed_records": out["failed_records"],
        "server_cpu_put": procs.cpu_rate(cpu0, cpu1, out["seconds"]),
        "server_cpu_get": procs.cpu_rate(cpu2, cpu3, out["read_seconds"]),
        "client_cpu_put": out["client_cpu_put"],
        "client_cpu_get": out["client_cpu_get"],
        "read_seconds": out["read_seconds"],
    }
    busy = procs.cpu_rate(busy0, busy1, out["seconds"])
    if busy is not None and row["server_cpu_put"] is not None:
        # What the rest of the machine took meanwhile (other work disturbs the figures).
        row["other_cpu_put"] = max(0.0, busy - row["server_cpu_put"] - out["client_cpu_put"])
    if out["errors"]:
        row["call_errors"] = out["errors"]
    return row


def _failure(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(exc)).strip()[-1000:]


def _shardline(options: Options, warmup: float, duration: float) -> Row:
    try:
        with (
            scratch_directory(options, "kinesis-api") as tmp,
            options.section("kinesis-api"),
            broker_server(os.path.join(tmp, "data")) as server,
        ):
            row = measure(server.endpoint, server.cpu_seconds, warmup, duration)
    except Exception as exc:  # reported in the row: the other systems still run
        return {"system": SHARDLINE, "error": _failure(exc)}
    row = {"system": SHARDLINE, **row}
    row["durability"] = "LMDB, acknowledged after an fsync'd commit (default settings)"
    if not row["verified"]:
        row["error"] = (
            f"read-back mismatch: {row['records_read']} records read for "
            f"{row['records_put']} acknowledged (or the digests differ)"
        )
    return row


@contextlib.contextmanager
def null_endpoint() -> Iterator[PeerServer]:
    """``bench.null_kinesis`` in a child Python on a free loopback port."""
    port = free_port()
    code = "import sys; from bench.null_kinesis import child_main; child_main(sys.argv[1:])"
    command = [sys.executable, "-c", code, "--port", str(port)]
    with server_process(command, port) as server:
        yield server


def _null(warmup: float, duration: float) -> Row:
    try:
        with null_endpoint() as server:
            row = measure(f"http://127.0.0.1:{server.port}", server.cpu_seconds, warmup, duration)
    except Exception as exc:
        return {"system": NULL, "error": _failure(exc)}
    row = {"system": NULL, **row}
    row["verified"] = None  # canned pages: nothing to verify
    row["durability"] = "nothing: every PutRecords gets a canned response"
    return row


def _emulator(
    system: str,
    start: Callable[[str], contextlib.AbstractContextManager[PeerServer]],
    options: Options,
    warmup: float,
    duration: float,
    durability: str,
    package: str,
) -> Row:
    try:
        with scratch_directory(options, "kinesis-api-emulator") as tmp, start(tmp) as server:
            row = measure(f"http://127.0.0.1:{server.port}", server.cpu_seconds, warmup, duration)
    except PeerUnavailable as exc:
        return {"system": system, "unavailable": str(exc)}
    except Exception as exc:  # a peer's failure is reported, not raised
        return {"system": system, "peer_error": _failure(exc)[-500:]}
    return {
        "system": system,
        **row,
        "durability": durability,
        "version": f"{package} {emulators.version(package)}",
    }


def _emulator_rows(options: Options, warmup: float, duration: float) -> list[Row]:
    return [
        _emulator(
            KINESALITE,
            lambda d: emulators.kinesalite(d),
            options,
            warmup,
            duration,
            emulators.kinesalite_durability(False),
            "kinesalite",
        ),
        _emulator(
            KINESALITE_LEVELDB,
            lambda d: emulators.kinesalite(d, durable=True),
            options,
            warmup,
            duration,
            emulators.kinesalite_durability(True),
            "kinesalite",
        ),
        _emulator(
            KINESIS_MOCK,
            emulators.kinesis_mock,
            options,
            warmup,
            duration,
            emulators.kinesis_mock_durability(),
            "kinesis-local",
        ),
    ]


def _number(row: Row, key: str) -> float | None:
    value = row.get(key)
    return float(value) if isinstance(value, int | float) and value > 0 else None


def with_ratios(rows: list[Row]) -> list[Row]:
    """Each other row's ratios shardline / it (put and get)."""
    ours = rows[0]
    put, get = _number(ours, "put_records_per_s"), _number(ours, "get_records_per_s")
    for row in rows[1:]:
        theirs_put, theirs_get = (
            _number(row, "put_records_per_s"),
            _number(row, "get_records_per_s"),
        )
        if put is not None and theirs_put is not None:
            if row["system"] == NULL:
                row["ceiling_share"] = put / theirs_put
            else:
                row["shardline_ratio"] = put / theirs_put
                row["ratio_of"] = "put records/s through boto3"
        if get is not None and theirs_get is not None:
            row["get_ratio"] = get / theirs_get
    return rows


def goals(rows: list[Row]) -> list[Goal]:
    ours = _number(rows[0], "put_records_per_s")
    fastest = max(
        (v for r in rows if r["system"] in EMULATORS if (v := _number(r, "put_records_per_s"))),
        default=None,
    )
    ceiling = next((_number(r, "put_records_per_s") for r in rows if r["system"] == NULL), None)
    return [
        Goal(
            "shardline put records/s / the faster emulator's (boto3, same run) >= 3",
            GOAL_VS_EMULATOR,
            ours / fastest if ours and fastest else None,
        ),
        Goal(
            "shardline put records/s / boto3's ceiling (the null endpoint, same run) >= 0.6",
            GOAL_VS_CEILING,
            ours / ceiling if ours and ceiling else None,
        ),
    ]


COLUMNS = (
    Column("system", "system"),
    Column("put_records_per_s", "put records/s", ",.0f"),
    Column("get_records_per_s", "get records/s", ",.0f"),
    Column("verified", "verified"),
    Column("server_cpu_put", "server CPU put", ".2f"),
    Column("client_cpu_put", "client CPU put", ".2f"),
    Column("server_cpu_get", "server CPU get", ".2f"),
    Column("shardline_ratio", "shardline put / this", ".2f"),
    Column("ceiling_share", "shardline put / ceiling", ".2f"),
    Column("get_ratio", "shardline get / this", ".2f"),
)


def _versions() -> dict[str, str]:
    out = {}
    for name in ("boto3", "botocore"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, timeout=30, check=True)
        out["node"] = node.stdout.decode().strip()
    except (OSError, subprocess.SubprocessError):
        out["node"] = "not installed"
    return out


def run(options: Options) -> ScenarioResult:
    duration, warmup = options.timing(DURATION, WARMUP, QUICK_DURATION, QUICK_WARMUP)
    result = ScenarioResult(
        parameters={
            "shards": SHARDS,
            "threads": THREADS,
            "records_per_request": load.RECORDS_PER_REQUEST,
            "record_bytes": load.RECORD_BYTES,
            "get_records_limit": load.READ_LIMIT,
            "duration_s": duration,
            "warmup_s": warmup,
            "load": "one child process, 4 threads, a boto3 client each (own session, one "
            "connection, retries off), put_records in closed loops, then get_records of "
            "every shard from TRIM_HORIZON",
            "server": "shardline serve in its own process, default settings (durable commits), "
            "the AWS JSON wire over HTTP/1.1",
            "peers": "kinesalite (memory, LevelDB) and kinesis-mock from npm under node; the "
            "null endpoint's canned responses for boto3's ceiling; same load, same run",
            "versions": _versions(),
        },
        columns=COLUMNS,
    )
    rows = [_shardline(options, warmup, duration)]
    if options.baseline:
        rows.append(_null(warmup, duration))
    if options.peers:
        rows += _emulator_rows(options, warmup, duration)
    result.rows = with_ratios(rows)
    # Without peers, or a baseline, some ratios have no row: their columns go.
    result.columns = tuple(c for c in COLUMNS if any(c.key in row for row in rows))
    result.goals = goals(rows)
    result.notes += [
        "put records/s: records acknowledged (FailedRecordCount subtracted) by the responses "
        "that arrived in the window / the window; get records/s: every record of the stream "
        "(warm-up included) read back / the read-back's wall time",
        "verified: every acknowledged record read back exactly once (count and a digest); "
        "the null endpoint serves canned pages, so there is nothing to verify",
        "server CPU: the server process's CPU seconds per second of the put window or of the "
        "read-back (1.00 = one core); client CPU likewise for the load process",
        "other_cpu_put (in the JSON rows, with its spread over repetitions): the cores the "
        "rest of the machine kept busy during the put window (/proc/stat less server and "
        "client); well above 0, other work disturbed that system's figures",
    ]
    for row in rows:
        if row.get("call_errors"):
            result.notes.append(
                f"{row['system']}: {row['failed_records']} records in failed calls, e.g. "
                f"{row['call_errors'][0]}"
            )
    for row in rows:
        if row.get("durability"):
            version = f" ({row['version']})" if row.get("version") else ""
            result.notes.append(f"{row['system']}{version} stores: {row['durability']}")
    return result


SCENARIO = Scenario(
    "kinesis-api",
    "boto3 put_records of 500 x 100 B from 4 threads and get_records back, beside the emulators",
    run,
)
