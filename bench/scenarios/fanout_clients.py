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
import json
import sys
import time
from typing import Any

import msgpack
import numpy as np
import trio

from broker.client import Client
from broker.errors import ShardlineError

from ..schedule import END_MARK, Schedule

STREAM = "fanout"
SHARD = "shardId-000000000000"
RECORD_BYTES = 100

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


async def produce(endpoint: str, rate: float, seconds: float, start_ns: int) -> dict[str, Any]:
    """Send the schedule's groups at their due times; stamps are due times, not send times.

    The timing runs in a thread with ``time.sleep`` (tens of microseconds of
    slack) rather than trio's timers, whose epoll timeouts round up to whole
    milliseconds: a millisecond of the load generator's own lateness would be
    counted against the broker. Each due group is handed to the trio thread,
    which starts a task to send it: the sends never wait for each other, and the
    thread does not wait for the hand-over.
    """
    schedule = Schedule.of(rate, seconds, start_ns)
    group = schedule.group
    late = 0
    failures = 0
    async with Client(endpoint, timeout=120.0) as client:

        async def send(body: bytes) -> None:
            nonlocal failures
            try:
                raw = await client.exchange("PutRecords", body)
            except ShardlineError:  # a timeout or a lost connection: the records count as lost
                failures += group
                return
            failures += _failed_records(raw.status, raw.body, group)

        async with trio.open_nursery() as nursery:
            token = trio.lowlevel.current_trio_token()

            def hand_over(due_ns: int) -> None:
                # Handed over without waiting for the trio thread to take it.
                token.run_sync_soon(nursery.start_soon, send, _group_body(due_ns, group))

            late = await trio.to_thread.run_sync(schedule.keep, hand_over)
        await client.put_records(STREAM, [_record(END_MARK)])
    return {
        **schedule.report(late),
        "failed_records": failures,
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


async def subscribe(endpoint: str, consumer_arn: str, delay: float) -> dict[str, Any]:
    """Count records due inside the window and their latencies until the end mark.

    The window (``lo,hi`` in monotonic ns) comes on stdin once the parent has
    every subscriber ready. Events are taken as the wire's bytes
    (``ShardEvents.wire``) and the records' due times read with numpy.
    """
    latencies: list[np.ndarray] = []
    count = 0
    first_ns = last_ns = 0
    async with (
        Client(endpoint) as client,
        client.subscribe_to_shard(consumer_arn, SHARD, {"Type": "LATEST"}) as events,
    ):
        print("ready", flush=True)
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        window = tuple(int(v) for v in line.split(","))
        with trio.move_on_after(window[1] / 1e9 - time.monotonic() + DRAIN_S):
            async for event in events.wire():
                due = due_times(event)
                if due is None or not due.size:
                    continue
                now = time.monotonic_ns()
                # Most events lie wholly inside the window (the fast test).
                if due.min() >= window[0] and due.max() < window[1]:
                    inside = due
                else:
                    inside = due[(due >= window[0]) & (due < window[1])]
                if inside.size:
                    latencies.append(now - inside)
                    count += int(inside.size)
                    first_ns = first_ns or now
                    last_ns = now
                if due[-1] == END_MARK:
                    break
                if delay:
                    await trio.sleep(delay)
    lat = np.concatenate(latencies) / 1e6 if latencies else np.zeros(0)
    if lat.size > 2_000_000:
        lat = lat[:: lat.size // 2_000_000]
    return {"records": count, "latency_ms": lat.tolist(), "first_ns": first_ns, "last_ns": last_ns}


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
    args = parser.parse_args(argv)
    if args.role == "producer":
        out = trio.run(produce, args.endpoint, args.rate, args.seconds, args.start)
    elif args.role == "drainer":
        out = trio.run(drain_shard, args.endpoint, args.consumer, args.records)
    else:
        out = trio.run(subscribe, args.endpoint, args.consumer, args.delay)
    print(json.dumps(out), flush=True)
