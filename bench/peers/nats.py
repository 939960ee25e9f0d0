"""Peer: NATS JetStream (Debian's ``nats-server -js``), measured as shardline's scenarios measure.

``nats_server`` runs ``nats-server -js`` on a free loopback port with its file
store in a scratch directory, and stops it with SIGTERM. Every measurement
below starts its own server and one stream (file storage, limits retention,
one replica: the only setup on one machine), runs its clients in child
processes (``child_main`` dispatches their roles, as the scenario modules do)
and returns one plain row (a dict) for the scenarios to put beside shardline's.

**Durability** (a row's ``durability`` key says what was measured). Debian's
nats-server 2.9.10, traced with strace: one ``pwrite64`` per message before
its acknowledgement, no fsync on the way, the block file's first fsync 120 s
after the stream was created; 2.9.10 has no setting for it (``sync_interval``,
``always`` for an fsync per write, arrived in 2.10). What it acknowledges
survives a crash of the server, not of the machine; shardline acknowledges
only after an fsync'd commit. ``fsync="always"`` asks a server that supports
it for ``sync_interval: always``, and raises ``PeerUnavailable`` on others.

What is measured, and how (the scenarios' docstrings give the rationale):

- ``ingest``: as ``ingest``'s peak phase, through **nats-py**, the client a
  Python user has: one publisher process sends ``batch`` ``js.publish_async``
  calls without waiting, then the next batch, keeping ``in_flight`` batches
  unacknowledged (4 x 500 by default, half of nats-py's cap of 4,000 pending
  asynchronous publishes; 1, 2 and 4 gave the same records/s within noise
  here, the client's CPU being the limit, 8 and 16 fewer); a batch counts
  when all its acknowledgements are in. Payloads are random bytes made before
  timing. Records/s acknowledged over ``duration`` after a warm-up; the
  stream's message count must equal every record acknowledged (``verified``).
- ``fanout_live``: as ``fanout``'s ``_measure``. ``readers`` reader
  processes, each with its own **push consumer** (deliver new; ack none, as
  a shardline subscriber acknowledges nothing; flow control, so that a slow
  reader falls behind rather than losing messages, with the heartbeats it
  needs), receiving in a nats-py message callback, its fastest path (130,000
  messages/s for one reader here, against 33,000 with ``next_msg`` and
  30,000 with pull ``fetch`` of 1,000 or 10,000). A producer process writes
  the fixed schedule's groups (``min(500, ceil(rate / 400))`` records, each
  group at its due time from a thread-timed loop, open loop), every record
  acknowledged by JetStream and starting with its group's due
  ``time.monotonic_ns()`` (8 bytes, little-endian); an end mark (due -1)
  ends it. A reader's latency runs from the due time to the moment its
  callback has the message and has read the due time: stalls anywhere count.
- ``drain``: a stream filled with ``records`` records before timing;
  ``readers`` processes each create a push consumer (deliver all, ack none,
  flow control) before the start, bind to it at a common start time, and
  report their seconds from that start to their last record. Push consumers
  with a callback, as above (pull ``fetch`` was four times slower).

Load generators that are not the thing measured (the fan-out producer, the
filling of a stream before a drain) skip nats-py and write pre-encoded NATS
protocol on a plain socket (``bench.peers.nats_wire``), as shardline's fan-out
producer sends pre-encoded PutRecords bodies: JetStream still acknowledges
and stores every record, and the generators disturb the measurement less.

Server CPU is the ``nats-server`` process's user+system seconds (from
``/proc``) per second of the measured part (1.0 = one core).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

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
from .nats_wire import WireConnection, create_stream, stream_messages

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.js.api import ConsumerConfig

RECORD_BYTES = 100
BATCH = 500
#: Batches of ``js.publish_async`` a publisher keeps unacknowledged.
IN_FLIGHT = 4
#: Distinct batches of random payloads made before timing (as ``ingest``'s 64 bodies).
DISTINCT_BATCHES = 64
FSYNC_POLICIES = ("default", "always")

#: The fan-out schedule, the same rule as ``bench.scenarios.fanout``.
_END = END_MARK.to_bytes(8, "little", signed=True)
#: How long readers wait for the end mark after the window closes.
DRAIN_S = 20.0
#: Latencies a reader sends back at most (evenly downsampled, as fanout's subscribers).
MAX_LATENCIES = 2_000_000
#: How far ahead of now the draining readers' common start is set.
GO_AHEAD_NS = 200_000_000
#: Messages per round of acknowledgements when filling a stream before a drain.
FILL_BATCH = 1_000
#: A push consumer's idle heartbeat (flow control needs heartbeats), seconds.
HEARTBEAT_S = 5.0
CHILD_TIMEOUT_S = 120.0


def available() -> str | None:
    """None when NATS JetStream can be measured here, else why not (and how to install it)."""
    try:
        require_binary("nats-server")
        require_module("nats", "nats-py")
    except PeerUnavailable as missing:
        return str(missing)
    return None


@functools.cache
def server_version() -> str:
    """The installed nats-server's version, e.g. ``2.9.10``."""
    done = subprocess.run(
        [require_binary("nats-server"), "--version"], capture_output=True, timeout=30, check=True
    )
    return done.stdout.decode().strip().rsplit("v", 1)[-1]


@functools.cache
def supports_sync_always() -> bool:
    """Whether the installed nats-server accepts ``sync_interval: always`` (2.10 and later)."""
    with tempfile.TemporaryDirectory(prefix="shardline-bench-nats-") as directory:
        config = _config(directory, "always")
        done = subprocess.run(
            [require_binary("nats-server"), "-c", config, "-t"], capture_output=True, timeout=30
        )
    return done.returncode == 0


def durability(fsync: str) -> str:
    """What an acknowledgement means under ``fsync`` on the installed server."""
    if fsync == "always":
        return (
            f"nats-server {server_version()} file store, sync_interval always: "
            "an fsync on every write before its acknowledgement"
        )
    return (
        f"nats-server {server_version()} file store, default sync: each message written to "
        "the OS page cache before its acknowledgement, fsync in the background every 2 min "
        "(survives a server crash, not an OS crash or a power cut)"
    )


def _label(fsync: str) -> str:
    return "fsync always" if fsync == "always" else "acknowledged before fsync"


def _config(directory: str, fsync: str) -> str:
    """A configuration file in ``directory`` for ``fsync="always"``; its path."""
    path = os.path.join(directory, "nats-server.conf")
    store = json.dumps(directory)  # a quoted string the configuration format reads
    with open(path, "w") as f:
        f.write(f"jetstream {{\n  store_dir: {store}\n  sync_interval: always\n}}\n")
    return path


@contextlib.contextmanager
def nats_server(directory: str, fsync: str = "default") -> Iterator[PeerServer]:
    """``nats-server -js`` on a free loopback port, file store in ``directory``; SIGTERM on exit.

    ``fsync="always"`` passes a configuration file with ``sync_interval:
    always`` and raises PeerUnavailable when the server does not support it.
    """
    if fsync not in FSYNC_POLICIES:
        raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, not {fsync!r}")
    binary = require_binary("nats-server")
    port = free_port()
    command = [binary, "-a", HOST, "-p", str(port)]
    if fsync == "always":
        if not supports_sync_always():
            raise PeerUnavailable(
                f"nats-server {server_version()} cannot fsync every write "
                "(sync_interval: always arrived in nats-server 2.10)"
            )
        command += ["-c", _config(directory, fsync)]
    else:
        command += ["-js", "-sd", directory]
    with server_process(command, port, cwd=directory) as server:
        yield server


@contextlib.contextmanager
def _started(fsync: str, tmpdir: str | None) -> Iterator[PeerServer]:
    with (
        tempfile.TemporaryDirectory(prefix="shardline-bench-nats-", dir=tmpdir) as directory,
        nats_server(directory, fsync) as server,
    ):
        yield server


def _stamped(due_ns: int, record_bytes: int) -> bytes:
    return due_ns.to_bytes(8, "little", signed=True) + b"x" * (record_bytes - 8)


def _check_record_bytes(record_bytes: int) -> None:
    if record_bytes < 8:  # the stamp
        raise ValueError(f"records carry an 8-byte stamp: record_bytes {record_bytes} < 8")


# -- children: processes of their own ----------------------------------------------


def _spawn(role: str, **options: object) -> subprocess.Popen[bytes]:
    """``child_main`` of this module in a child Python: ``role --option value ...``."""
    return procs.spawn("bench.peers.nats", role, **options)


def _line(child: subprocess.Popen[bytes], expected: str) -> None:
    procs.expect(child, expected, "a nats child")


def _last_json(child: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    return procs.last_json(child, timeout, "a nats child")


async def _connect(port: int) -> tuple[NATS, list[int]]:
    """A nats-py connection, and a counter of the messages it dropped as a slow consumer."""
    import nats
    from nats.errors import SlowConsumerError

    dropped = [0]

    async def on_error(error: Exception) -> None:
        if isinstance(error, SlowConsumerError):
            dropped[0] += 1
        else:
            print(f"nats-py: {error!r}", file=sys.stderr)

    connection = await nats.connect(
        f"nats://{HOST}:{port}", allow_reconnect=False, error_cb=on_error
    )
    return connection, dropped


# -- ingest through nats-py -----------------------------------------------------------


def _payloads(batch: int, record_bytes: int) -> list[list[bytes]]:
    rng = random.Random(7)
    out = []
    for _ in range(DISTINCT_BATCHES):
        blob = rng.randbytes(batch * record_bytes)
        out.append([blob[i * record_bytes : (i + 1) * record_bytes] for i in range(batch)])
    return out


async def _publish(
    port: int,
    stream: str,
    batch: int,
    record_bytes: int,
    in_flight: int,
    warmup: float,
    duration: float,
) -> dict[str, Any]:
    """Batches of ``js.publish_async`` with ``in_flight`` unacknowledged; counts per batch.

    Prints ``measuring`` and ``measured`` around the window, for the parent
    to read the server's CPU time at those moments.
    """
    payloads = _payloads(batch, record_bytes)
    subject = f"{stream}.records"
    nc, _ = await _connect(port)
    js = nc.jetstream(publish_async_max_pending=max(4_000, batch * in_flight))
    measuring = stop = False
    records = requests = acknowledged = errors = 0
    cpu = seconds = 0.0

    async def window() -> None:
        nonlocal measuring, stop, cpu, seconds
        await asyncio.sleep(warmup)
        print("measuring", flush=True)
        cpu0, t0 = time.process_time(), time.perf_counter()
        measuring = True
        await asyncio.sleep(duration)
        measuring = False
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        print("measured", flush=True)
        stop = True

    def tally(results: list[Any]) -> None:
        nonlocal records, requests, acknowledged, errors
        failed = sum(1 for r in results if isinstance(r, BaseException))
        acknowledged += len(results) - failed
        errors += failed
        if measuring and not failed:
            records += len(results)
            requests += 1

    async def acks(futures: list[asyncio.Future[Any]]) -> list[Any]:
        gathered = asyncio.gather(*futures, return_exceptions=True)
        return await asyncio.wait_for(gathered, CHILD_TIMEOUT_S)

    timer = asyncio.create_task(window())
    pending: deque[asyncio.Task[list[Any]]] = deque()
    i = 0
    try:
        while not stop:
            futures = [
                await js.publish_async(subject, data) for data in payloads[i % len(payloads)]
            ]
            pending.append(asyncio.create_task(acks(futures)))
            i += 1
            if len(pending) >= in_flight:
                tally(await pending.popleft())
        while pending:
            tally(await pending.popleft())
        await timer
    finally:
        timer.cancel()
        await nc.close()
    return {
        "seconds": seconds,
        "records": records,
        "requests": requests,
        "acknowledged": acknowledged,
        "errors": errors,
        "client_cpu": cpu / seconds if seconds else None,
    }


def ingest(
    *,
    warmup: float,
    duration: float,
    batch: int = BATCH,
    record_bytes: int = RECORD_BYTES,
    in_flight: int = IN_FLIGHT,
    tmpdir: str | None = None,
    fsync: str = "default",
) -> dict[str, Any]:
    """Batches of ``js.publish_async`` from one nats-py process: records/s acknowledged.

    Keys: system, records_per_s, requests_per_s (batches/s), client_cpu,
    server_cpu, batch, in_flight, durability, errors, verified (the stream's
    message count = records acknowledged, no error), server_pid.
    """
    stream = "ingest"
    with _started(fsync, tmpdir) as server, procs.reaped() as children:
        create_stream(server.port, stream)
        child = _spawn(
            "ingest",
            port=server.port,
            stream=stream,
            batch=batch,
            record_bytes=record_bytes,
            in_flight=in_flight,
            warmup=warmup,
            duration=duration,
        )
        children.append(child)
        _line(child, "measuring")
        cpu0 = server.cpu_seconds()
        _line(child, "measured")
        cpu1 = server.cpu_seconds()
        out = _last_json(child, CHILD_TIMEOUT_S)
        stored = stream_messages(server.port, stream)
    return {
        "system": f"NATS JetStream, nats-py ({_label(fsync)})",
        "records_per_s": out["records"] / out["seconds"],
        "requests_per_s": out["requests"] / out["seconds"],
        "client_cpu": out["client_cpu"],
        "server_cpu": procs.cpu_rate(cpu0, cpu1, out["seconds"]),
        "batch": batch,
        "in_flight": in_flight,
        "durability": durability(fsync),
        "errors": out["errors"],
        "verified": out["errors"] == 0 and stored == out["acknowledged"],
        "server_pid": server.process.pid,
    }


# -- live fan-out: a producer on a schedule, push consumers ----------------------------


def _produce(
    port: int, stream: str, rate: float, seconds: float, start_ns: int, record_bytes: int
) -> dict[str, Any]:
    """Write the schedule's groups at their due times; a second thread counts the acks.

    As fanout's producer: the timing runs in a thread with ``time.sleep``, and
    the writes never wait for acknowledgements (open loop).
    """
    # The clock thread must get the interpreter lock soon after its sleep ends, even
    # while the counting thread parses (the default switch interval is 5 ms).
    sys.setswitchinterval(0.0002)
    schedule = Schedule.of(rate, seconds, start_ns)
    group, groups = schedule.group, schedule.groups
    subject = f"{stream}.records".encode()
    connection = WireConnection(port)
    counted: list[tuple[int, int]] = []
    try:

        def count() -> None:
            counted.append(connection.acks(groups * group))

        counter = threading.Thread(target=count)
        counter.start()
        try:
            late = schedule.keep(
                lambda due_ns: connection.send(
                    connection.pub(subject, _stamped(due_ns, record_bytes)) * group
                )
            )
        except BaseException:
            connection.abort()
            raise
        finally:
            counter.join()
        if not counted:
            raise RuntimeError("the producer's acknowledgements were not all read")
        connection.send(connection.pub(subject, _stamped(END_MARK, record_bytes)))
        end_stored, end_refused = connection.acks(1)
    finally:
        connection.close()
    stored, refused = counted[0]
    return {
        **schedule.report(late),
        "failed_records": refused + end_refused,
        "acknowledged": stored + end_stored,
    }


async def _push_consumer(
    nc: NATS, stream: str, name: str, deliver: str
) -> tuple[str, ConsumerConfig]:
    """A durable push consumer of every subject of ``stream``: ack none, flow control.

    Returns its name and configuration, for ``subscribe_bind``; nothing is
    delivered until something subscribes to its deliver subject.
    """
    from nats.js import api

    config = api.ConsumerConfig(
        durable_name=name,
        deliver_subject=nc.new_inbox(),
        deliver_policy=api.DeliverPolicy(deliver),
        ack_policy=api.AckPolicy.NONE,
        flow_control=True,
        idle_heartbeat=HEARTBEAT_S,
        filter_subject=f"{stream}.>",
    )
    info = await nc.jetstream().add_consumer(stream, config)
    return info.name, config


async def _read_live(port: int, stream: str, name: str) -> dict[str, Any]:
    """Count records due inside the window and their latencies, until the end mark.

    The window (``lo,hi`` in monotonic ns) comes on stdin once the parent has
    every reader ready. The callback keeps each message's stamp and arrival
    time; numpy does the rest after the end.
    """
    nc, dropped = await _connect(port)
    stamps = bytearray()
    arrivals = array("q")
    ended = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        now = time.monotonic_ns()
        head = msg.data[:8]
        if len(head) != 8:  # not a record of this run: stamps and arrivals stay in step
            return
        arrivals.append(now)
        stamps.extend(head)
        if head == _END:
            ended.set()

    try:
        consumer, config = await _push_consumer(nc, stream, name, "new")
        await nc.jetstream().subscribe_bind(stream, config, consumer, cb=on_message)
        print("ready", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        lo, hi = (int(v) for v in line.split(","))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), (hi - time.monotonic_ns()) / 1e9 + DRAIN_S)
    finally:
        await nc.close()
    due = np.frombuffer(bytes(stamps), dtype="<i8")
    arrived = np.frombuffer(arrivals, dtype=np.int64)
    inside = (due >= lo) & (due < hi)
    lat = (arrived[inside] - due[inside]) / 1e6
    if lat.size > MAX_LATENCIES:
        lat = lat[:: lat.size // MAX_LATENCIES]
    times = arrived[inside]
    return {
        "records": int(inside.sum()),
        "latency_ms": lat.tolist(),
        "first_ns": int(times[0]) if times.size else 0,
        "last_ns": int(times[-1]) if times.size else 0,
        "dropped": dropped[0],
    }


def fanout_live(
    *,
    rate: int,
    readers: int,
    warmup: float,
    duration: float,
    record_bytes: int = RECORD_BYTES,
    tmpdir: str | None = None,
    fsync: str = "default",
) -> dict[str, Any]:
    """``readers`` nats-py push consumers of one stream written at ``rate`` on a fixed schedule.

    Keys, with fanout's definitions: system, kind ("live"), rate, subscribers,
    per_subscriber_min, per_subscriber_median, delivered_total, complete,
    p50_ms, p90_ms, p99_ms, p999_ms, max_ms, cdf_ms, server_cpu, late_groups,
    failed_records; and slow_consumer_drops (messages nats-py dropped, all
    readers), durability, server_pid.
    """
    _check_record_bytes(record_bytes)
    stream = "fanout"
    with _started(fsync, tmpdir) as server, procs.reaped() as children:
        create_stream(server.port, stream)
        for i in range(readers):
            children.append(_spawn("reader", port=server.port, stream=stream, name=f"reader-{i}"))
        for child in children:
            _line(child, "ready")
        # Every reader is subscribed: the schedule starts shortly (the producer's start-up).
        start_ns = time.monotonic_ns() + 1_500_000_000
        window = (start_ns + int(warmup * 1e9), start_ns + int((warmup + duration) * 1e9))
        for child in children:
            procs.tell(child, f"{window[0]},{window[1]}")
        cpu0 = server.cpu_seconds()
        producer = _spawn(
            "producer",
            port=server.port,
            stream=stream,
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
        "system": "NATS JetStream, nats-py push consumers",
        "kind": "live",
        "rate": rate,
        "subscribers": readers,
        **delivered(results, rate, duration),
        "server_cpu": procs.cpu_rate(cpu0, cpu1, warmup + duration),
        "late_groups": produced["late_groups"],
        "failed_records": produced["failed_records"],
        "slow_consumer_drops": sum(r["dropped"] for r in results),
        "durability": durability(fsync),
        "server_pid": server.process.pid,
    }


# -- fan-out from a pre-filled stream --------------------------------------------------


def _fill(port: int, stream: str, records: int, record_bytes: int) -> None:
    """Publish ``records`` records, FILL_BATCH at a time; every one must be acknowledged."""
    connection = WireConnection(port)
    try:
        frame = connection.pub(f"{stream}.records".encode(), _stamped(0, record_bytes))
        done = 0
        while done < records:
            n = min(FILL_BATCH, records - done)
            connection.send(frame * n)
            stored, refused = connection.acks(n)
            if refused:
                raise RuntimeError(f"nats-server refused {refused} records while filling")
            done += stored
    finally:
        connection.close()


def _drain_timeout(records: int) -> float:
    """How long a draining reader waits for its last record: far more than it needs."""
    return CHILD_TIMEOUT_S + records / 1_000


async def _read_all(port: int, stream: str, name: str, records: int) -> dict[str, Any]:
    """Read ``records`` records from the start at the go time; the seconds from the go.

    The consumer exists before the go (so its creation is not timed); it
    delivers once the reader binds to it, at the go, a monotonic ns time on stdin.
    """
    nc, dropped = await _connect(port)
    read = 0
    last_ns = 0
    finished = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        nonlocal read, last_ns
        read += 1
        if read == records:
            last_ns = time.monotonic_ns()
            finished.set()

    try:
        consumer, config = await _push_consumer(nc, stream, name, "all")
        print("ready", flush=True)
        go_ns = int(await asyncio.to_thread(sys.stdin.readline))
        await asyncio.sleep(max(0.0, (go_ns - time.monotonic_ns()) / 1e9))
        await nc.jetstream().subscribe_bind(stream, config, consumer, cb=on_message)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished.wait(), _drain_timeout(records))
    finally:
        await nc.close()
    end_ns = last_ns or time.monotonic_ns()
    return {"records": read, "seconds": (end_ns - go_ns) / 1e9, "dropped": dropped[0]}


def drain(
    *,
    records: int,
    readers: int,
    record_bytes: int = RECORD_BYTES,
    tmpdir: str | None = None,
    fsync: str = "default",
) -> dict[str, Any]:
    """``readers`` processes each reading a pre-filled stream of ``records`` from the start.

    Keys, as fanout's drain rows: system, kind ("drain"), records, subscribers,
    per_subscriber_min (records/s of the slowest), delivered_total (readers x
    records / the slowest's time), complete (the share of the records the
    slowest read), seconds (the slowest's), server_cpu (per second of the
    slowest's time), reads (what each read), fill_s; and consumer (how the
    readers read), slow_consumer_drops, server_pid.
    """
    _check_record_bytes(record_bytes)
    stream = "drain"
    with _started(fsync, tmpdir) as server, procs.reaped() as children:
        create_stream(server.port, stream)
        filling = time.perf_counter()
        _fill(server.port, stream, records, record_bytes)
        fill_s = time.perf_counter() - filling
        for i in range(readers):
            children.append(
                _spawn(
                    "drainer", port=server.port, stream=stream, name=f"reader-{i}", records=records
                )
            )
        for child in children:
            _line(child, "ready")
        cpu0 = server.cpu_seconds()
        # A common start, a little ahead: every reader has read its line by then.
        go_ns = time.monotonic_ns() + GO_AHEAD_NS
        for child in children:
            procs.tell(child, str(go_ns))
        results = [_last_json(child, _drain_timeout(records) + 60) for child in children]
        cpu1 = server.cpu_seconds()
    # As fanout's drain when complete; a reader that gave up counts only what it read.
    slowest = max(r["seconds"] for r in results)
    return {
        "system": "NATS JetStream, nats-py push consumers",
        "kind": "drain",
        "records": records,
        "subscribers": readers,
        "per_subscriber_min": min(r["records"] / r["seconds"] for r in results),
        "delivered_total": sum(r["records"] for r in results) / slowest,
        "complete": min(r["records"] for r in results) / records,
        "seconds": slowest,
        "server_cpu": procs.cpu_rate(cpu0, cpu1, slowest),
        "reads": [r["records"] for r in results],
        "fill_s": fill_s,
        "consumer": "push, ack none, flow control, message callback",
        "slow_consumer_drops": sum(r["dropped"] for r in results),
        "server_pid": server.process.pid,
    }


# -- the children's entry point --------------------------------------------------------


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="nats peer child")
    parser.add_argument("role", choices=("ingest", "producer", "reader", "drainer"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--name", default="reader", help="a reader's durable consumer")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--record-bytes", type=int, default=RECORD_BYTES)
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT)
    parser.add_argument("--warmup", type=float, default=0.0)
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--start", type=int, default=0, help="monotonic ns of the first group")
    parser.add_argument("--records", type=int, default=0)
    args = parser.parse_args(argv)
    out: dict[str, Any]
    if args.role == "ingest":
        out = asyncio.run(
            _publish(
                args.port,
                args.stream,
                args.batch,
                args.record_bytes,
                args.in_flight,
                args.warmup,
                args.duration,
            )
        )
    elif args.role == "producer":
        out = _produce(
            args.port, args.stream, args.rate, args.seconds, args.start, args.record_bytes
        )
    elif args.role == "reader":
        out = asyncio.run(_read_live(args.port, args.stream, args.name))
    else:
        out = asyncio.run(_read_all(args.port, args.stream, args.name, args.records))
    print(json.dumps(out), flush=True)
