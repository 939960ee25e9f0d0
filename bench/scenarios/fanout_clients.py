"""The processes of the ``fanout`` scenarios: the scheduled producer, subscribers, drainers.

Each runs as a child Python (``child_main``) so that the broker, the load and
every reader have their own interpreter: see ``bench/scenarios/fanout.py`` for
the method (a fixed schedule, due times in the records, latency from the due
time to the subscriber's decoding). The subscribers read the records' due
times and counts straight from the events' bytes (``due_times``,
``records_in``), building no object per record.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import h2.events
import msgpack
import numpy as np
import trio

from broker.client import Client
from broker.client.blocking import SyncClient
from broker.client.transport import client_connection
from broker.protocol import h2_patch
from broker.protocol.codec import CONTENT_TYPE

from ..schedule import END_MARK, Schedule

STREAM = "fanout"
SHARD = "shardId-000000000000"
RECORD_BYTES = 100

h2_patch.apply()

DRAIN_S = 20.0
DRAIN_TIMEOUT_S = 600.0


def _record(due_ns: int) -> dict[str, Any]:
    data = due_ns.to_bytes(8, "little", signed=True) + b"x" * (RECORD_BYTES - 8)
    return {"Data": data, "PartitionKey": "k"}


_BODY_HEAD: bytes = msgpack.packb({"StreamName": STREAM, "Records": []})[
    :-1
]  # the map, up to the array


def _group_body(due_ns: int, count: int) -> bytes:
    """A PutRecords body of ``count`` identical records due at ``due_ns``, packed once.

    The same bytes as ``msgpack.packb`` of the request map; the producer is
    the load generator, and the less of the machine it takes the less it
    disturbs what is measured.
    """
    record: bytes = msgpack.packb(_record(due_ns))
    header = bytes([0x90 | count]) if count < 16 else b"\xdc" + count.to_bytes(2, "big")
    return _BODY_HEAD + header + record * count


def _failed_records(status: int, body: bytes, count: int) -> int:
    """FailedRecordCount, read from the front of the answer; every record if it failed."""
    if status != 200:
        return count
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(body)
    for _ in range(unpacker.read_map_header()):
        if unpacker.unpack() == "FailedRecordCount":
            return int(unpacker.unpack())
        unpacker.skip()
    return count


# -- the producer (a child process) ---------------------------------------------


class _BlockingProducer:
    """PutRecords sent by the clock thread itself over a blocking HTTP/2 connection (h2).

    The peers' producers write their protocols on raw sockets from the clock
    thread (``bench/peers``); sending through the asynchronous ``Client``
    instead cost a hand-over to trio's thread and a task per group, about
    0.2 of a core at 1,000 records/s taken from the subscribers and the broker
    at the very moments that are measured. Here the clock thread builds the
    request with h2 and writes it; a second thread reads the answers and
    counts the records they did not store. One lock keeps h2 and the socket's
    writes to one thread at a time. Requests are open-loop: a send waits only
    for HTTP/2 flow control and the broker's stream limit, never an answer.
    """

    def __init__(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        self.sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.h2 = client_connection()
        self.headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", parts.netloc.encode()),
            (b":path", b"/v1/PutRecords"),
            (b"content-type", CONTENT_TYPE.encode()),
        ]
        self.ready = threading.Condition(threading.Lock())
        #: Records of each request not yet answered, by stream.
        self.waiting: dict[int, int] = {}
        self.status: dict[int, int] = {}
        self.bodies: dict[int, list[bytes]] = {}
        self.answered = 0
        self.failed = 0
        self.settings_seen = False
        #: What stopped the reader thread, if anything did.
        self.error: BaseException | None = None
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(64 << 20)
        self.sock.sendall(self.h2.data_to_send())
        while not self.settings_seen:  # the broker's limits before the first request
            self._receive()

    def send(self, body: bytes, records: int) -> None:
        with self.ready:
            h2c = self.h2
            while h2c.open_outbound_streams >= h2c.remote_settings.max_concurrent_streams:
                self.ready.wait()
            stream_id = h2c.get_next_available_stream_id()
            self.waiting[stream_id] = records
            h2c.send_headers(stream_id, [*self.headers, (b"content-length", b"%d" % len(body))])
            sent = 0
            while sent < len(body):
                room = min(h2c.local_flow_control_window(stream_id), h2c.max_outbound_frame_size)
                if room <= 0:
                    self.sock.sendall(h2c.data_to_send())
                    self.ready.wait()
                    continue
                h2c.send_data(
                    stream_id, body[sent : sent + room], end_stream=sent + room >= len(body)
                )
                sent += room
            self.sock.sendall(h2c.data_to_send())

    def read_answers(self, count: int) -> None:
        """Read until ``count`` requests in all were answered (the reader thread)."""
        try:
            while self.answered < count:
                self._receive()
        except BaseException as exc:  # reported by ``produce``
            self.error = exc

    def _receive(self) -> None:
        data = self.sock.recv(256 * 1024)
        if not data:
            raise ConnectionError("the broker closed the producer's connection")
        with self.ready:
            for event in self.h2.receive_data(data):
                self._on_event(event)
            out = self.h2.data_to_send()
            if out:
                self.sock.sendall(out)
            self.ready.notify_all()

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings_seen = True
        elif isinstance(event, h2.events.ResponseReceived):
            for name, value in event.headers or ():
                if name == b":status":
                    self.status[event.stream_id] = int(value)
        elif isinstance(event, h2.events.DataReceived):
            self.bodies.setdefault(event.stream_id, []).append(event.data or b"")
            if event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
            records = self.waiting.pop(event.stream_id, 0)
            body = b"".join(self.bodies.pop(event.stream_id, []))
            status = self.status.pop(event.stream_id, 0)
            self.failed += (
                records
                if isinstance(event, h2.events.StreamReset)
                else _failed_records(status, body, records)
            )
            self.answered += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def produce(endpoint: str, rate: float, seconds: float, start_ns: int) -> dict[str, Any]:
    """Send the schedule's groups at their due times; stamps are due times, not send times.

    The timing runs in a thread with ``time.sleep`` (tens of microseconds of
    slack) rather than an event loop's timers, whose epoll timeouts round up
    to whole milliseconds: a millisecond of the load generator's own lateness
    would be counted against the broker. The clock thread sends each group
    itself (``_BlockingProducer``), never waiting for an answer.
    """
    schedule = Schedule.of(rate, seconds, start_ns)
    group = schedule.group
    producer = _BlockingProducer(endpoint)
    try:
        reader = threading.Thread(target=producer.read_answers, args=(schedule.groups + 1,))
        reader.start()
        try:
            late = schedule.keep(lambda due_ns: producer.send(_group_body(due_ns, group), group))
            producer.send(_group_body(END_MARK, 1), 1)
        finally:
            reader.join(timeout=120)
        if reader.is_alive() or producer.error is not None:
            raise RuntimeError(f"the producer's answers did not all arrive: {producer.error!r}")
    finally:
        producer.close()
    return {
        **schedule.report(late),
        "failed_records": producer.failed,
    }


# -- a subscriber (a child process) ---------------------------------------------


#: A records event as the hub encodes it starts with these bytes (the map, its Type).
_RECORDS_EVENT = b"\x85\xa4Type\xa7records"
_RECORDS_KEY = b"\xa7Records"
#: One stored record of this scenario: [uint64 arrival, "k", bin8 of RECORD_BYTES].
_RECORD_HEAD = b"\x93\xcf"
_RECORD_SIZE = 1 + 9 + 2 + 2 + RECORD_BYTES
_DUE_AT = 1 + 9 + 2 + 2  # the data's first byte: its due time


def _records_array(event: bytes) -> tuple[int, int] | None:
    """A records event's record count and where its first record begins; None for other events.

    Read from the ``Records`` array's header, without decoding any record.
    """
    if not event.startswith(_RECORDS_EVENT):
        return None
    at = event.index(_RECORDS_KEY) + len(_RECORDS_KEY)
    kind = event[at]
    if kind == 0xDC:
        return int.from_bytes(event[at + 1 : at + 3], "big"), at + 3
    if kind == 0xDD:
        return int.from_bytes(event[at + 1 : at + 5], "big"), at + 5
    if kind & 0xF0 == 0x90:
        return kind & 0x0F, at + 1
    raise ValueError(f"no records array in an event: {event[:64]!r}")


def due_times(event: bytes) -> np.ndarray | None:
    """The due times of a records event's records, read in place; None for other events.

    The scenario's records all have the same layout, so the stored array is a
    table of fixed-size rows and numpy reads the due times out of it: the
    subscriber builds no object per record. A layout that differs is decoded.
    """
    array = _records_array(event)
    if array is None:
        return None
    count, at = array
    end = at + count * _RECORD_SIZE
    # Every row starts with the same bytes (checked with strided slices, no per-record work).
    fixed = (
        len(event) >= end
        and event[at:end:_RECORD_SIZE] == b"\x93" * count
        and event[at + 1 : end : _RECORD_SIZE] == b"\xcf" * count
        and event[at + 10 : at + 14] == b"\xa1k\xc4" + bytes([RECORD_BYTES])
    )
    if not fixed:
        records = msgpack.unpackb(event, raw=False)["Records"]
        return np.frombuffer(b"".join([r[2][:8] for r in records]), dtype="<i8")
    # The due times in place: one strided view over the rows, copied out once.
    return np.ndarray(
        (count,), dtype="<i8", buffer=event, offset=at + _DUE_AT, strides=(_RECORD_SIZE,)
    ).copy()


class _Tally:
    """A subscriber's count and latencies of the records due inside the measured window."""

    def __init__(self, line: str) -> None:
        self.lo, self.hi = (int(v) for v in line.split(","))
        self.latencies: list[np.ndarray] = []
        self.count = 0
        self.first_ns = self.last_ns = 0

    def add(self, event: bytes) -> bool:
        """Count one event's records; True once it carried the producer's end mark."""
        due = due_times(event)
        if due is None or not due.size:
            return False
        now = time.monotonic_ns()
        # Most events lie wholly inside the window (the fast test).
        if due.min() >= self.lo and due.max() < self.hi:
            inside = due
        else:
            inside = due[(due >= self.lo) & (due < self.hi)]
        if inside.size:
            self.latencies.append(now - inside)
            self.count += int(inside.size)
            self.first_ns = self.first_ns or now
            self.last_ns = now
        return bool(due[-1] == END_MARK)

    def deadline(self) -> float:
        """The monotonic time at which a subscriber stops waiting for the end mark."""
        return self.hi / 1e9 + DRAIN_S

    def result(self) -> dict[str, Any]:
        lat = np.concatenate(self.latencies) / 1e6 if self.latencies else np.zeros(0)
        if lat.size > 2_000_000:
            lat = lat[:: lat.size // 2_000_000]
        return {
            "records": self.count,
            "latency_ms": lat.tolist(),
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
        }


async def subscribe(endpoint: str, consumer_arn: str, delay: float) -> dict[str, Any]:
    """Count records due inside the window and their latencies until the end mark.

    The window (``lo,hi`` in monotonic ns) comes on stdin once the parent has
    every subscriber ready. Events are taken as the wire's bytes
    (``ShardEvents.wire``) and the records' due times read with numpy.
    """
    async with (
        Client(endpoint) as client,
        client.subscribe_to_shard(consumer_arn, SHARD, {"Type": "LATEST"}) as events,
    ):
        print("ready", flush=True)
        tally = _Tally(await trio.to_thread.run_sync(sys.stdin.readline))
        with trio.move_on_after(tally.deadline() - time.monotonic()):
            async for event in events.wire():
                if tally.add(event):
                    break
                if delay:
                    await trio.sleep(delay)
    return tally.result()


def subscribe_blocking(endpoint: str, consumer_arn: str, delay: float) -> dict[str, Any]:
    """``subscribe`` through the blocking subscriber (``SyncClient.subscribe_to_shard``)."""
    with (
        SyncClient(endpoint) as client,
        client.subscribe_to_shard(
            consumer_arn, SHARD, {"Type": "LATEST"}, read_timeout=DRAIN_S
        ) as events,
    ):
        print("ready", flush=True)
        tally = _Tally(sys.stdin.readline())
        # Heartbeats (one a second without records) bring the loop back to the deadline.
        for event in events.wire():
            if tally.add(event) or time.monotonic() > tally.deadline():
                break
            if delay:
                time.sleep(delay)
    return tally.result()


#: The key before a records event's last field but one (its continuation).
_CONTINUATION_KEY = msgpack.packb("ContinuationSequenceNumber")


def records_in(event: bytes) -> int:
    """How many records a records event carries (0 for other events), from the array's header.

    An *error* event raises: a drain that cannot go on is a failed measurement.
    """
    array = _records_array(event)
    if array is not None:
        return array[0]
    decoded = msgpack.unpackb(event, raw=False)  # heartbeats and the like: small
    if decoded.get("Type") == "error":
        raise RuntimeError(f"the subscription failed: {decoded.get('ErrorCode')}")
    return 0


def continuation(event: bytes) -> str:
    """A records event's ContinuationSequenceNumber, decoded from the event's tail only.

    The key is looked for from the end: it follows the records, so an
    occurrence of its bytes inside a record's data comes before it.
    """
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(event[event.rindex(_CONTINUATION_KEY) + len(_CONTINUATION_KEY) :])
    return str(unpacker.unpack())


async def drain_shard(endpoint: str, consumer_arn: str, records: int) -> dict[str, Any]:
    """Read the pre-filled shard from TRIM_HORIZON until ``records`` have arrived; time it.

    The go comes on stdin as a start time (monotonic ns, shared by the
    processes of one machine); the subscriber subscribes at that time and
    reports its elapsed seconds from it. It subscribes only then because the
    broker starts pushing as soon as a subscription is open: one opened before
    the go would have a stream window (1 MiB) of records waiting when the
    clock starts. So the time includes the SubscribeToShard exchange (its
    connection's set-up too: a few milliseconds). Records are counted from
    each event's array header (``events.wire()``, no record decoded). A
    subscription that ends before the last record (its lifetime is 5 minutes)
    is renewed ``AFTER_SEQUENCE_NUMBER`` the last continuation.
    """
    count = 0
    subscriptions = 0
    async with Client(endpoint) as client:
        await client.describe_stream_summary(STREAM)  # the client is connected and warm
        print("ready", flush=True)
        go_ns = int(await trio.to_thread.run_sync(sys.stdin.readline))
        await trio.sleep(max(0.0, (go_ns - time.monotonic_ns()) / 1e9))
        position: dict[str, Any] = {"Type": "TRIM_HORIZON"}
        with trio.fail_after(DRAIN_TIMEOUT_S):
            while count < records:
                subscriptions += 1
                last = b""
                async with client.subscribe_to_shard(consumer_arn, SHARD, position) as events:
                    async for event in events.wire():
                        n = records_in(event)
                        if n:
                            count += n
                            last = event
                            if count >= records:
                                break
                if last:
                    position = {
                        "Type": "AFTER_SEQUENCE_NUMBER",
                        "SequenceNumber": continuation(last),
                    }
        seconds = (time.monotonic_ns() - go_ns) / 1e9
    return {"records": count, "seconds": seconds, "subscriptions": subscriptions}


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="fanout child")
    parser.add_argument("role", choices=("producer", "subscriber", "drainer"))
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--consumer", default="")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--start", type=int, default=0, help="monotonic ns of the first group")
    parser.add_argument("--records", type=int, default=0, help="records to drain")
    parser.add_argument("--blocking", action="store_true", help="the blocking subscriber")
    args = parser.parse_args(argv)
    if args.role == "producer":
        out = produce(args.endpoint, args.rate, args.seconds, args.start)
    elif args.role == "drainer":
        out = trio.run(drain_shard, args.endpoint, args.consumer, args.records)
    elif args.blocking:
        out = subscribe_blocking(args.endpoint, args.consumer, args.delay)
    else:
        out = trio.run(subscribe, args.endpoint, args.consumer, args.delay)
    print(json.dumps(out), flush=True)
