"""Peer: Redis Streams (Debian's ``redis-server``), measured as shardline's scenarios measure.

``redis_server`` runs ``redis-server`` on a free loopback port over a scratch
directory with the append-only file as its only durability (``--appendonly
yes --appendfsync always|everysec``, no RDB snapshots), and stops it with
SIGTERM. Every measurement below starts its own server and stops it, runs its
clients in child processes (``child_main`` dispatches their roles, as the
scenario modules do) and returns one plain row (a dict) for the scenarios to
put beside shardline's.

Two views, so that client costs and server costs are not confused:

- **What a Python user gets** (``ingest_python``, ``fanout_live``, ``drain``):
  redis-py with the hiredis parser, the client people pick in Python. Its
  command encoding and reply parsing (one tuple and one dict per stream entry)
  are the client's job and count, as shardline's client counts in shardline's
  scenarios.
- **The server's own capacity** (``ingest_c``): Redis' C ``redis-benchmark``
  sending ``XADD`` in pipelines.

Load generators that are *not* the thing measured (the fan-out producer, the
filling of a stream before a drain) skip redis-py: they write pre-encoded RESP
commands on a plain socket and count the replies with hiredis' C reader, as
shardline's fan-out producer sends pre-encoded PutRecords bodies. The less of
the machine they take, the less they disturb what is measured.

Methods, mirroring the scenarios (read their docstrings for the rationale):

- ``ingest_python``: as ``ingest``'s peak phase. One producer process,
  ``connections`` concurrent closed loops, each sending a pipeline
  (``transaction=False``) of ``batch`` ``XADD stream * d <record>`` commands
  and its next one as soon as the replies are in. Records are random bytes
  made before timing; the commands are built by redis-py. Records/s acknowledged
  (every reply an entry id) over ``duration`` after a warm-up; at the end
  ``XLEN`` must equal every record acknowledged (``verified``). The loops are
  threads sharing one redis-py connection pool: on this machine they gave
  redis-py twice the records/s of as many asyncio tasks over a
  ``redis.asyncio`` pool (117,000 against 58,000 at ``appendfsync always``).
- ``ingest_c``: ``redis-benchmark -c CLIENTS -P BATCH -n N XADD stream * d
  <literal>`` with N from a short calibration run so that the run lasts about
  ``duration``; records/s from its CSV output.
- ``fanout_live``: as ``fanout``'s ``measure``. ``readers`` reader processes
  loop on ``XREAD BLOCK COUNT 10000 STREAMS stream <last id>`` from the id of
  a setup entry written before they start (the ``$`` of a reader that
  connects before the producer, made race-free; each XREAD's timeout is the
  drain deadline, so it blocks as ``BLOCK 0`` would while records flow). A
  producer process sends groups of records on a fixed schedule (``min(500,
  ceil(rate / 400))`` records per group, each group one pipeline of XADDs
  written at its due time by a thread-timed loop, open loop: replies are
  counted by another thread, and sends never wait for them); each record's
  first 8 bytes are its group's due ``time.monotonic_ns()``, little-endian.
  A reader's latency for a record runs from its due time to the moment the
  reader has it as Python objects and has read its due time, so stalls
  anywhere count (no coordinated omission). The producer ends with an
  end-mark record (due -1).
- ``drain``: a stream filled with ``records`` entries before timing;
  ``readers`` processes connect, then at a common start time each reads the
  whole stream from the start with ``XREAD COUNT 10000`` (non-blocking) and
  reports its seconds from that start. ``XRANGE`` with an exclusive start
  and ``COUNT`` (``command="xrange"``) was no faster here: the same within
  noise with 10 readers, 15-20 % slower with 2.

Server CPU is the ``redis-server`` process's user+system seconds (from
``/proc``) per second of the measured part (1.0 = one core).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import random
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from .. import children as procs
from ..latency import delivered
from ..schedule import END_MARK, Schedule
from . import (
    HOST,
    PeerServer,
    PeerUnavailable,
    free_port,
    require_binary,
    require_module,
    server_process,
)

STREAM = b"stream"
FIELD = b"d"
RECORD_BYTES = 100
BATCH = 500
CONNECTIONS = 16
#: Entries per XREAD of a reader (live and draining).
READ_COUNT = 10_000
#: Distinct pipelines of random records made before timing (as ``ingest``'s 64 bodies).
DISTINCT_BATCHES = 64
#: How a draining reader reads: ``XREAD COUNT`` or ``XRANGE`` with ``COUNT``.
DRAIN_COMMAND: Literal["xread", "xrange"] = "xread"
FSYNC_POLICIES = ("always", "everysec")

#: The fan-out schedule, the same rule as ``bench.scenarios.fanout``.
#: How long readers wait for the end mark after the window closes.
DRAIN_S = 20.0
#: Latencies a reader sends back at most (evenly downsampled, as fanout's subscribers).
MAX_LATENCIES = 2_000_000
#: How far ahead of now the draining readers' common start is set.
GO_AHEAD_NS = 200_000_000
#: Entries per pipeline when filling a stream before a drain.
FILL_BATCH = 1_000
#: redis-benchmark's calibration run: this many pipelines per client.
CALIBRATION_ROUNDS = 16
CHILD_TIMEOUT_S = 120.0


def available() -> str | None:
    """None when Redis can be measured here, else why not (and how to install it)."""
    try:
        require_binary("redis-server")
        require_binary("redis-benchmark")
        require_module("redis", "redis")
        require_module("hiredis", "hiredis")
    except PeerUnavailable as missing:
        return str(missing)
    return None


@contextlib.contextmanager
def redis_server(directory: str, fsync: str) -> Iterator[PeerServer]:
    """``redis-server`` on a free loopback port, AOF in ``directory``; SIGTERM on exit."""
    if fsync not in FSYNC_POLICIES:
        raise ValueError(f"appendfsync must be one of {FSYNC_POLICIES}, not {fsync!r}")
    port = free_port()
    command = [require_binary("redis-server"), "--port", str(port), "--bind", HOST]
    command += ["--dir", directory, "--appendonly", "yes", "--appendfsync", fsync]
    command += ["--save", "", "--protected-mode", "no", "--daemonize", "no"]
    with server_process(command, port, cwd=directory) as server:
        yield server


@contextlib.contextmanager
def _started(fsync: str, tmpdir: str | None) -> Iterator[PeerServer]:
    with (
        tempfile.TemporaryDirectory(prefix="shardline-bench-redis-", dir=tmpdir) as directory,
        redis_server(directory, fsync) as server,
    ):
        yield server


def _xadd(data: bytes) -> bytes:
    """``XADD stream * d <data>`` as RESP, the bytes redis-py or hiredis would send."""
    parts = (b"XADD", STREAM, b"*", FIELD, data)
    return b"*5\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)


def _stamped(due_ns: int, record_bytes: int) -> bytes:
    return due_ns.to_bytes(8, "little", signed=True) + b"x" * (record_bytes - 8)


class _RawConnection:
    """A socket writing pre-encoded commands and counting replies with hiredis' C reader.

    Writes and reads may run in two threads (the socket is full duplex): the
    fan-out producer's clock writes while another thread counts.
    """

    def __init__(self, port: int, timeout: float = CHILD_TIMEOUT_S) -> None:
        import hiredis

        self._sock = socket.create_connection((HOST, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = hiredis.Reader()

    def close(self) -> None:
        self._sock.close()

    def abort(self) -> None:
        """Wake a thread blocked reading replies: it sees the connection closed."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def send(self, commands: bytes) -> None:
        self._sock.sendall(commands)

    def replies(self, count: int) -> tuple[int, int]:
        """Read ``count`` replies: (entry ids, errors)."""
        ids = errors = 0
        while ids + errors < count:
            reply = self._reader.gets()
            if reply is False:
                chunk = self._sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("redis-server closed the connection")
                self._reader.feed(chunk)
            elif isinstance(reply, bytes):
                ids += 1
            else:
                errors += 1
        return ids, errors


# -- children: processes of their own ----------------------------------------------


def _spawn(role: str, **options: object) -> subprocess.Popen[bytes]:
    """``child_main`` of this module in a child Python: ``role --option value ...``."""
    return procs.spawn("bench.peers.redis", role, **options)


def _line(child: subprocess.Popen[bytes], expected: str) -> None:
    procs.expect(child, expected, "a redis child")


def _last_json(child: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    return procs.last_json(child, timeout, "a redis child")


# -- ingest through redis-py ---------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    """One closed loop's counts; ``records``/``requests`` only while measuring."""

    acknowledged: int = 0
    errors: int = 0
    records: int = 0
    requests: int = 0

    def add(self, replies: list[Any], measuring: bool) -> None:
        ids = sum(1 for reply in replies if isinstance(reply, bytes))
        self.acknowledged += ids
        self.errors += len(replies) - ids
        if measuring:
            self.records += ids
            self.requests += 1


@dataclass(slots=True)
class _Window:
    """The measured window, as the closed loops see it; set by the main thread."""

    measuring: bool = False
    stop: bool = False


def _batches(batch: int, record_bytes: int) -> list[list[bytes]]:
    rng = random.Random(7)
    out = []
    for _ in range(DISTINCT_BATCHES):
        blob = rng.randbytes(batch * record_bytes)
        out.append([blob[i * record_bytes : (i + 1) * record_bytes] for i in range(batch)])
    return out


def _measure_window(window: _Window, warmup: float, duration: float) -> tuple[float, float]:
    """Mark the window (telling the parent), return its (seconds, this process's CPU)."""
    time.sleep(warmup)
    print("measuring", flush=True)
    cpu0, t0 = time.process_time(), time.perf_counter()
    window.measuring = True
    time.sleep(duration)
    window.measuring = False
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print("measured", flush=True)
    window.stop = True
    return seconds, cpu


def _ingest_threads(
    port: int, batches: list[list[bytes]], connections: int, warmup: float, duration: float
) -> tuple[list[_Tally], float, float]:
    import redis

    pool = redis.ConnectionPool(host=HOST, port=port, max_connections=connections)
    client = redis.Redis(connection_pool=pool)
    window = _Window()
    tallies = [_Tally() for _ in range(connections)]
    failures: list[BaseException] = []

    def loop(k: int) -> None:
        i = k * 7
        try:
            while not window.stop:
                pipe = client.pipeline(transaction=False)
                for data in batches[i % len(batches)]:
                    pipe.xadd(STREAM, {FIELD: data})
                tallies[k].add(pipe.execute(raise_on_error=False), window.measuring)
                i += 1
        except BaseException as failure:  # raised again in the main thread
            failures.append(failure)

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(connections)]
    for thread in threads:
        thread.start()
    try:
        seconds, cpu = _measure_window(window, warmup, duration)
    finally:
        window.stop = True
        for thread in threads:
            thread.join()
        pool.disconnect()
    if failures:
        raise failures[0]
    return tallies, seconds, cpu


def _ingest_child(args: argparse.Namespace) -> dict[str, Any]:
    import redis.utils

    batches = _batches(args.batch, args.record_bytes)
    tallies, seconds, cpu = _ingest_threads(
        args.port, batches, args.connections, args.warmup, args.duration
    )
    return {
        "seconds": seconds,
        "records": sum(t.records for t in tallies),
        "requests": sum(t.requests for t in tallies),
        "acknowledged": sum(t.acknowledged for t in tallies),
        "errors": sum(t.errors for t in tallies),
        "client_cpu": cpu / seconds,
        "hiredis": bool(redis.utils.HIREDIS_AVAILABLE),
    }


def ingest_python(
    *,
    fsync: str,
    warmup: float,
    duration: float,
    batch: int = BATCH,
    record_bytes: int = RECORD_BYTES,
    connections: int = CONNECTIONS,
    tmpdir: str | None = None,
) -> dict[str, Any]:
    """Closed-loop XADD pipelines from one redis-py process: records/s acknowledged.

    Keys: system, records_per_s, requests_per_s (pipelines/s), client_cpu,
    server_cpu, batch, connections, hiredis, client (how the loops run: threads),
    errors, verified (XLEN = records acknowledged, no error reply), server_pid.
    """
    import redis

    with _started(fsync, tmpdir) as server, procs.reaped() as children:
        child = _spawn(
            "ingest",
            port=server.port,
            batch=batch,
            record_bytes=record_bytes,
            connections=connections,
            warmup=warmup,
            duration=duration,
        )
        children.append(child)
        _line(child, "measuring")
        cpu0 = server.cpu_seconds()
        _line(child, "measured")
        cpu1 = server.cpu_seconds()
        out = _last_json(child, CHILD_TIMEOUT_S)
        with redis.Redis(host=HOST, port=server.port) as client:
            length = int(cast(int, client.xlen(STREAM)))
    return {
        "system": f"Redis Streams, redis-py + hiredis (appendfsync {fsync})",
        "records_per_s": out["records"] / out["seconds"],
        "requests_per_s": out["requests"] / out["seconds"],
        "client_cpu": out["client_cpu"],
        "server_cpu": procs.cpu_rate(cpu0, cpu1, out["seconds"]),
        "batch": batch,
        "connections": connections,
        "hiredis": out["hiredis"],
        "client": "threads",
        "errors": out["errors"],
        "verified": out["errors"] == 0 and length == out["acknowledged"],
        "server_pid": server.process.pid,
    }


# -- ingest through redis-benchmark ---------------------------------------------------


def _literal(record_bytes: int) -> str:
    """A printable record of ``record_bytes`` (a command-line argument cannot hold NUL)."""
    rng = random.Random(7)
    return "".join(rng.choices(string.ascii_letters + string.digits, k=record_bytes))


def _redis_benchmark(port: int, clients: int, batch: int, requests: int, record: str) -> float:
    """One redis-benchmark run of ``requests`` XADDs; its requests/s."""
    command = [require_binary("redis-benchmark"), "-h", HOST, "-p", str(port)]
    command += ["-c", str(clients), "-P", str(batch), "-n", str(requests), "--csv"]
    command += ["XADD", STREAM.decode(), "*", FIELD.decode(), record]
    done = subprocess.run(command, capture_output=True, check=True, timeout=CHILD_TIMEOUT_S * 5)
    for row in csv.DictReader(io.StringIO(done.stdout.decode())):
        if row.get("test", "").startswith("XADD"):
            return float(row["rps"])
    raise RuntimeError(f"no XADD row in redis-benchmark's output: {done.stdout[-2000:]!r}")


def ingest_c(
    *,
    fsync: str,
    duration: float,
    batch: int = BATCH,
    record_bytes: int = RECORD_BYTES,
    clients: int = CONNECTIONS,
    tmpdir: str | None = None,
) -> dict[str, Any]:
    """Redis' C benchmark client sending XADD pipelines: the server's own capacity.

    Keys: system, records_per_s, server_cpu, batch, clients, records, seconds,
    verified (XLEN = every XADD sent), server_pid.
    """
    import redis

    record = _literal(record_bytes)
    with _started(fsync, tmpdir) as server:
        # A short calibration run chooses N, so that the measured run lasts about `duration`.
        calibration = clients * batch * CALIBRATION_ROUNDS
        rate = _redis_benchmark(server.port, clients, batch, calibration, record)
        unit = clients * batch
        requests = max(1, math.ceil(rate * duration / unit)) * unit
        cpu0, t0 = server.cpu_seconds(), time.perf_counter()
        rate = _redis_benchmark(server.port, clients, batch, requests, record)
        seconds = time.perf_counter() - t0
        cpu1 = server.cpu_seconds()
        with redis.Redis(host=HOST, port=server.port) as client:
            length = int(cast(int, client.xlen(STREAM)))
    return {
        "system": f"Redis Streams, redis-benchmark C client (appendfsync {fsync})",
        "records_per_s": rate,
        "server_cpu": procs.cpu_rate(cpu0, cpu1, seconds),
        "batch": batch,
        "clients": clients,
        "records": requests,
        "seconds": seconds,
        "verified": length == calibration + requests,
        "server_pid": server.process.pid,
    }


# -- live fan-out: a producer on a schedule, readers on XREAD BLOCK ----------------


def _produce(
    port: int, rate: float, seconds: float, start_ns: int, record_bytes: int
) -> dict[str, Any]:
    """Write the schedule's groups at their due times; a second thread counts the replies.

    As fanout's producer: the timing runs in a thread with ``time.sleep``, and
    the sends never wait for earlier replies (open loop). The groups go down
    one connection, which Redis answers in order.
    """
    schedule = Schedule.of(rate, seconds, start_ns)
    group, groups = schedule.group, schedule.groups
    connection = _RawConnection(port)
    counted: list[tuple[int, int]] = []
    try:

        def count() -> None:
            counted.append(connection.replies(groups * group))

        counter = threading.Thread(target=count)
        counter.start()
        try:
            late = schedule.keep(
                lambda due_ns: connection.send(_xadd(_stamped(due_ns, record_bytes)) * group)
            )
        except BaseException:
            connection.abort()
            raise
        finally:
            counter.join()
        if not counted:
            raise RuntimeError("the producer's replies were not all read")
        connection.send(_xadd(_stamped(END_MARK, record_bytes)))
        end_ids, end_errors = connection.replies(1)
    finally:
        connection.close()
    ids, errors = counted[0]
    return {
        **schedule.report(late),
        "failed_records": errors + end_errors,
        "acknowledged": ids + end_ids,
    }


def _due_times(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> np.ndarray:
    """The due times of XREAD's entries: each record's first 8 bytes, read with numpy."""
    return np.frombuffer(b"".join([fields[FIELD][:8] for _, fields in entries]), dtype="<i8")


def _read_live(port: int, after: bytes) -> dict[str, Any]:
    """Count records due inside the window and their latencies, until the end mark.

    The window (``lo,hi`` in monotonic ns) comes on stdin once the parent has
    every reader ready; reading starts from ``after`` (the setup entry), so
    nothing the producer writes is missed whenever the first XREAD goes out.
    Each XREAD blocks until entries come (its timeout is the drain deadline,
    not a poll).
    """
    import redis

    latencies: list[np.ndarray] = []
    count = 0
    first_ns = last_ns = 0
    with redis.Redis(host=HOST, port=port) as client:
        client.ping()
        print("ready", flush=True)
        lo, hi = (int(v) for v in sys.stdin.readline().split(","))
        deadline_ns = hi + int(DRAIN_S * 1e9)
        last = after
        while (remaining_ms := (deadline_ns - time.monotonic_ns()) // 1_000_000) > 0:
            reply = cast(
                list[Any], client.xread({STREAM: last}, count=READ_COUNT, block=remaining_ms)
            )
            if not reply:
                continue
            entries = reply[0][1]
            last = entries[-1][0]
            due = _due_times(entries)
            now = time.monotonic_ns()
            # Most replies lie wholly inside the window (the fast test).
            fast = due.min() >= lo and due.max() < hi
            inside = due if fast else due[(due >= lo) & (due < hi)]
            if inside.size:
                latencies.append(now - inside)
                count += int(inside.size)
                first_ns = first_ns or now
                last_ns = now
            if due[-1] == END_MARK:
                break
    lat = np.concatenate(latencies) / 1e6 if latencies else np.zeros(0)
    if lat.size > MAX_LATENCIES:
        lat = lat[:: lat.size // MAX_LATENCIES]
    return {"records": count, "latency_ms": lat.tolist(), "first_ns": first_ns, "last_ns": last_ns}


def fanout_live(
    *,
    rate: int,
    readers: int,
    warmup: float,
    duration: float,
    fsync: str = "always",
    record_bytes: int = RECORD_BYTES,
    tmpdir: str | None = None,
) -> dict[str, Any]:
    """``readers`` XREAD BLOCK readers of one stream written at ``rate`` on a fixed schedule.

    Keys, with fanout's definitions: system, kind ("live"), rate, subscribers,
    per_subscriber_min, per_subscriber_median, delivered_total, complete,
    p50_ms, p90_ms, p99_ms, p999_ms, max_ms, cdf_ms, server_cpu, late_groups,
    failed_records; and server_pid.
    """
    import redis

    with _started(fsync, tmpdir) as server, procs.reaped() as children:
        with redis.Redis(host=HOST, port=server.port) as client:
            setup = cast(bytes, client.xadd(STREAM, {FIELD: _stamped(0, record_bytes)}))
        for _ in range(readers):
            children.append(_spawn("reader", port=server.port, after=setup.decode()))
        for child in children:
            _line(child, "ready")
        # Every reader is connected: the schedule starts shortly (the producer's start-up).
        start_ns = time.monotonic_ns() + 1_500_000_000
        window = (start_ns + int(warmup * 1e9), start_ns + int((warmup + duration) * 1e9))
        for child in children:
            procs.tell(child, f"{window[0]},{window[1]}")
        cpu0 = server.cpu_seconds()
        producer = _spawn(
            "producer",
            port=server.port,
            rate=rate,
            seconds=warmup + duration,
            start=start_ns,
            record_bytes=record_bytes,
        )
        children.append(producer)
        produced = _last_json(producer, warmup + duration + CHILD_TIMEOUT_S)
        cpu1 = server.cpu_seconds()
        results = [_last_json(child, DRAIN_S + CHILD_TIMEOUT_S) for child in children[:readers]]
    return {
        "system": "Redis Streams, redis-py XREAD BLOCK readers",
        "kind": "live",
        "rate": rate,
        "subscribers": readers,
        **delivered(results, rate, duration),
        "server_cpu": procs.cpu_rate(cpu0, cpu1, warmup + duration),
        "late_groups": produced["late_groups"],
        "failed_records": produced["failed_records"],
        "server_pid": server.process.pid,
    }


# -- fan-out from a pre-filled stream ------------------------------------------------


def _fill(port: int, records: int, record_bytes: int) -> None:
    """Write ``records`` entries in pipelines of FILL_BATCH; every reply must be an id."""
    connection = _RawConnection(port)
    try:
        command = _xadd(_stamped(0, record_bytes))
        done = 0
        while done < records:
            n = min(FILL_BATCH, records - done)
            connection.send(command * n)
            ids, errors = connection.replies(n)
            if errors:
                raise RuntimeError(f"redis-server refused {errors} XADDs while filling")
            done += ids
    finally:
        connection.close()


def _read_all(port: int, records: int, command: str) -> dict[str, Any]:
    """Read ``records`` entries from the start at the go time; the seconds from the go.

    The go comes on stdin as a monotonic ns start time, as for fanout's drainers.
    """
    import redis

    with redis.Redis(host=HOST, port=port) as client:
        client.ping()  # connected and warm
        print("ready", flush=True)
        go_ns = int(sys.stdin.readline())
        time.sleep(max(0.0, (go_ns - time.monotonic_ns()) / 1e9))
        read = 0
        last = b"0-0"
        while read < records:
            if command == "xrange":
                entries = cast(list[Any], client.xrange(STREAM, min=b"(" + last, count=READ_COUNT))
            else:
                reply = cast(list[Any], client.xread({STREAM: last}, count=READ_COUNT))
                entries = reply[0][1] if reply else []
            if not entries:
                break
            read += len(entries)
            last = entries[-1][0]
        seconds = (time.monotonic_ns() - go_ns) / 1e9
    return {"records": read, "seconds": seconds}


def drain(
    *,
    records: int,
    readers: int,
    fsync: str = "always",
    record_bytes: int = RECORD_BYTES,
    tmpdir: str | None = None,
    command: Literal["xread", "xrange"] = DRAIN_COMMAND,
) -> dict[str, Any]:
    """``readers`` processes each reading a pre-filled stream of ``records`` from the start.

    Keys, as fanout's drain rows: system, kind ("drain"), records, subscribers,
    per_subscriber_min (records/s of the slowest), delivered_total (readers x
    records / the slowest's time), seconds (the slowest's), server_cpu (per
    second of the slowest's time), reads (what each read), fill_s; and
    command, server_pid.
    """
    with _started(fsync, tmpdir) as server, procs.reaped() as children:
        filling = time.perf_counter()
        _fill(server.port, records, record_bytes)
        fill_s = time.perf_counter() - filling
        for _ in range(readers):
            children.append(_spawn("drainer", port=server.port, records=records, command=command))
        for child in children:
            _line(child, "ready")
        cpu0 = server.cpu_seconds()
        # A common start, a little ahead: every reader has read its line by then.
        go_ns = time.monotonic_ns() + GO_AHEAD_NS
        for child in children:
            procs.tell(child, str(go_ns))
        results = [_last_json(child, CHILD_TIMEOUT_S) for child in children]
        cpu1 = server.cpu_seconds()
    slowest = max(r["seconds"] for r in results)
    return {
        "system": "Redis Streams, redis-py readers",
        "kind": "drain",
        "records": records,
        "subscribers": readers,
        "per_subscriber_min": records / slowest,
        "delivered_total": readers * records / slowest,
        "seconds": slowest,
        "server_cpu": procs.cpu_rate(cpu0, cpu1, slowest),
        "reads": [r["records"] for r in results],
        "command": command,
        "fill_s": fill_s,
        "server_pid": server.process.pid,
    }


# -- the children's entry point --------------------------------------------------------


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="redis peer child")
    parser.add_argument("role", choices=("ingest", "producer", "reader", "drainer"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--record-bytes", type=int, default=RECORD_BYTES)
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--warmup", type=float, default=0.0)
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--start", type=int, default=0, help="monotonic ns of the first group")
    parser.add_argument("--after", default="0-0", help="the entry id a live reader starts after")
    parser.add_argument("--records", type=int, default=0)
    parser.add_argument("--command", choices=("xread", "xrange"), default=DRAIN_COMMAND)
    args = parser.parse_args(argv)
    if args.role == "ingest":
        out = _ingest_child(args)
    elif args.role == "producer":
        out = _produce(args.port, args.rate, args.seconds, args.start, args.record_bytes)
    elif args.role == "reader":
        out = _read_live(args.port, args.after.encode())
    else:
        out = _read_all(args.port, args.records, args.command)
    print(json.dumps(out), flush=True)
