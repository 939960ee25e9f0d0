"""Microbenchmarks behind the write path's choices: ``python -m bench.micro [NAME ...]``.

Each prints one line per variant; they are for comparing variants in the
same run on the same machine, not for absolute figures.

- ``md5``: a partition key's MD5 through OpenSSL (``hashlib.md5``) and through
  CPython's built-in ``_md5``.
- ``decode``: a 500-record PutRecords body with msgpack's ``unpackb`` and with
  the codec's ``decode_body`` (msgpack ``skip`` + ormsgpack).
- ``commit``: durable LMDB commits of one 60 KB value, one every 2 ms.
- ``answer``: a PutRecords answer packed by numpy and as maps, by record count.
- ``route``: ``route()`` of PutRecords bodies on a real log, 16 tasks, no
  HTTP/2: event-loop CPU per record (the whole write path but the wire), for
  the map form and the compact form (with the client's hash keys), alternately.
- ``gil``: numpy calls of the write path on 500 records, alone and beside a
  thread running Python: those that let the GIL go pay for taking it back.
- ``request``: the async client's CPU and wall time per request, one at a
  time, against a broker process (``DescribeStreamSummary``, a few bytes each
  way): the fixed cost of a request on the client side.
- ``subscriber``: one fan-out subscriber's process CPU per pushed event, at
  1,000 records/s (the ``fanout`` producer: 333 events/s), taking events as
  bytes (``wire()``) and reading their due times as the bench does: the trio
  ``Client``, then the blocking ``SyncClient``.
- ``push``: the broker's event-loop CPU to push one 420 B event (a
  1,000 records/s commit) onto a subscription's stream, socket write left
  out: framed by h2's ``send_data``, then framed by hand and counted in h2's
  windows (``H2ServerConnection.push_nowait``, the hub's path).
- ``aws``: the AWS JSON codec on a 500-record PutRecords body and answer
  (``broker.protocol.aws``), beside the standard library's ``json``.
- ``wakeup``: a process's CPU per wake-up to read 500 B that arrive every
  3 ms on a socket, by how it waits: a blocking ``recv``, a bare epoll loop,
  trio's ``receive_some``, trio waiting first and reading once
  (``broker.protocol.receiving.SocketReader``) and asyncio's ``sock_recv``:
  the fixed cost of an event loop on this machine, whatever the reader then does.
- ``subscriber-floor``: the least a Python subscriber can spend per pushed
  event of the ``subscriber`` load: one HTTP/2 stream read with h2 and
  nothing else, in one trio task, and with a blocking socket (no event loop);
  then with a blocking socket and the frames split by hand (no h2), and
  ``recv`` alone.
- ``producer``: the ``Producer`` against a broker process with 8, 16 and 32
  shards (as many lanes, so as many batches in flight): records/s, and the
  broker's CPU per record beside raw PutRecords of the same run.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import tempfile
import time
import timeit
from typing import Any

import lmdb
import msgpack
import numpy as np
import trio

from broker.config import BrokerConfig
from broker.hashing import md5
from broker.operations import open_broker
from broker.protocol.codec import decode_body
from broker.server.metrics import ServerMetrics
from broker.server.routing import route

RECORDS = 500


def _body(seed: int = 1) -> bytes:
    rng = random.Random(seed)
    records = [
        {"Data": rng.randbytes(100), "PartitionKey": f"key-{rng.random()}"} for _ in range(RECORDS)
    ]
    body: bytes = msgpack.packb({"StreamName": "s", "Records": records})
    return body


def _per_record(label: str, fn: object, number: int = 300) -> None:
    seconds = timeit.timeit(fn, number=number)  # type: ignore[arg-type]
    print(f"{label:40s} {seconds / number / RECORDS * 1e9:8.1f} ns/record")


def bench_md5() -> None:
    keys = [f"key-{random.random()}".encode() for _ in range(RECORDS)]
    _per_record("hashlib.md5(key).digest()", lambda: [hashlib.md5(k).digest() for k in keys])
    _per_record("_md5 (broker.hashing.md5)", lambda: [md5(k).digest() for k in keys])


def bench_decode() -> None:
    body = _body()
    _per_record("msgpack.unpackb", lambda: msgpack.unpackb(body, raw=False, strict_map_key=True))
    _per_record("decode_body (skip + ormsgpack)", lambda: decode_body(body))


def bench_commit(count: int = 3000) -> None:
    with tempfile.TemporaryDirectory() as path:
        env = lmdb.open(path, map_size=1 << 32, sync=True, metasync=True)
        value = os.urandom(60_000)
        took = []
        for i in range(count):
            t0 = time.perf_counter()
            with env.begin(write=True) as txn:
                txn.put(i.to_bytes(8, "big"), value)
            took.append(time.perf_counter() - t0)
            time.sleep(0.002)
        env.close()
    ms = np.asarray(took) * 1e3
    p50, p90, p99, p999 = np.percentile(ms, [50, 90, 99, 99.9])
    print(
        f"durable commit of 60 KB: p50 {p50:.2f} p90 {p90:.2f} p99 {p99:.2f} "
        f"p99.9 {p999:.2f} max {ms.max():.2f} ms ({count} commits)"
    )


def _compact_body(seed: int = 1) -> bytes:
    from broker.protocol.codec import encode_body
    from broker.protocol.compact_puts import compact_request

    records = msgpack.unpackb(_body(seed))["Records"]
    return encode_body({"StreamName": "s", **(compact_request(records) or {})})


def bench_route(requests: int = 800, tasks: int = 16) -> None:
    for form in ("maps", "compact", "maps", "compact"):
        _route_form(form, requests, tasks)


def _route_form(form: str, requests: int, tasks: int) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as path:
            async with open_broker(BrokerConfig(data=path)) as broker:
                await broker.log.create_stream("s", 8)
                metrics = ServerMetrics()
                make = _body if form == "maps" else _compact_body
                bodies = [make(seed) for seed in range(64)]
                send, receive = trio.open_memory_channel[bytes](requests)
                for i in range(requests):
                    send.send_nowait(bodies[i % len(bodies)])
                send.close()

                async def worker() -> None:
                    async for body in receive:
                        response = await route(broker, metrics, "POST", "/v1/PutRecords", body)
                        assert response.status == 200, msgpack.unpackb(response.body)

                cpu0, wall0 = time.thread_time(), time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for _ in range(tasks):
                        nursery.start_soon(worker)
                cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
                records = requests * RECORDS
                print(
                    f"route() PutRecords ({form}): {cpu / records * 1e9:.0f} ns of event-loop CPU "
                    f"per record, {records / wall:,.0f} records/s"
                )

    trio.run(main)


def bench_gil(number: int = 200) -> None:
    import threading

    from broker.hashing import ShardRouter, even_ranges
    from broker.model import Shard
    from broker.protocol.packing import pack_put_records

    router = ShardRouter([Shard(i, r, 0) for i, r in enumerate(even_ranges(8))])
    rng = random.Random(5)
    digests = b"".join(md5(rng.randbytes(8)).digest() for _ in range(RECORDS))
    positions = router.digest_positions(digests)
    listed = positions.tolist()
    wide = ShardRouter([Shard(i, r, 0) for i, r in enumerate(even_ranges(40))])
    ids = [f"shardId-{i:012d}" for i in range(8)]
    firsts: list[int | None] = [((1 << 96) | (i << 64)) + 5 for i in range(8)]
    calls = {
        "np.argsort (stable)": lambda: np.argsort(positions, kind="stable"),
        "digest_positions, 8 shards": lambda: router.digest_positions(digests),
        "digest_positions, 40 shards": lambda: wide.digest_positions(digests),
        "pack_put_records": lambda: pack_put_records(listed, ids, firsts),
    }
    for label, call in calls.items():
        alone = timeit.timeit(call, number=number) / number
        stop = threading.Event()

        def busy(stop: threading.Event = stop) -> None:
            n = 0
            while not stop.is_set():
                n += 1

        thread = threading.Thread(target=busy)
        thread.start()
        try:
            beside = timeit.timeit(call, number=number // 4) / (number // 4)
        finally:
            stop.set()
            thread.join()
        print(
            f"{label:30s} alone {alone * 1e6:8.1f} us, beside a busy thread {beside * 1e6:8.1f} us"
        )


def bench_answer() -> None:
    """A PutRecords answer packed by numpy against its maps packed by msgpack, by size."""
    from broker.operations.writes import _PutRecordsResult
    from broker.protocol.packing import pack_put_records

    rng = random.Random(3)
    ids = [f"shardId-{i:012d}" for i in range(8)]
    firsts: list[int | None] = [((1 << 96) | (i << 64)) + 5 for i in range(8)]
    for n in (1, 10, 32, 64, 128, 500):
        positions = [rng.randrange(8) for _ in range(n)]
        result = _PutRecordsResult(positions, ids, firsts, n)
        number = 2000

        def packed(p: list[int] = positions) -> object:
            return pack_put_records(p, ids, firsts)

        def as_maps(r: _PutRecordsResult = result) -> object:
            return msgpack.packb(r.to_dict())

        numpy_us = timeit.timeit(packed, number=number)
        maps_us = timeit.timeit(as_maps, number=number)
        print(
            f"{n:4d} records: numpy {numpy_us / number * 1e6:6.1f} us, "
            f"maps {maps_us / number * 1e6:6.1f} us"
        )


def bench_request() -> None:
    from bench.broker_process import broker_server
    from broker.client import Client

    with tempfile.TemporaryDirectory() as tmp, broker_server(os.path.join(tmp, "data")) as server:

        async def run() -> None:
            async with Client(server.endpoint) as client:
                await client.create_stream("s", 1)
                body = msgpack.packb({"StreamName": "s"})
                for _ in range(200):
                    await client.exchange("DescribeStreamSummary", body)
                n = 3000
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(n):
                    await client.exchange("DescribeStreamSummary", body)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                print(
                    f"one request at a time: client CPU {cpu / n * 1e6:.0f} us, "
                    f"round trip {wall / n * 1e6:.0f} us ({n} requests)"
                )

        trio.run(run)


def bench_producer() -> None:
    from bench.broker_process import broker_server, run_child
    from broker.client import Client

    for shards in (8, 16, 32):
        with (
            tempfile.TemporaryDirectory() as tmp,
            broker_server(os.path.join(tmp, "data")) as server,
        ):

            async def create(endpoint: str = server.endpoint, count: int = shards) -> None:
                async with Client(endpoint) as client:
                    await client.create_stream("ingest", count)

            trio.run(create)
            figures = []
            for kind in ("raw", "producer"):
                cpu = server.cpu_seconds() or 0.0
                out = run_child(
                    "bench.scenarios.producer",
                    kind,
                    "--endpoint",
                    server.endpoint,
                    "--warmup",
                    "1",
                    "--duration",
                    "6",
                )
                used = (server.cpu_seconds() or 0.0) - cpu
                records = out.get("records", 0) + out["records_per_s"]  # + ~1 s of warm-up
                figures.append(
                    f"{kind} {out['records_per_s']:,.0f} records/s, broker "
                    f"{used / records * 1e6:.2f} us CPU/record"
                )
            print(f"{shards:2d} shards: " + "; ".join(figures))


def bench_subscriber() -> None:
    """The trio subscriber's CPU per event, then the blocking one's (``SyncClient``)."""
    _subscriber_cpu(blocking=False)
    _subscriber_cpu(blocking=True)


def _subscriber_cpu(blocking: bool) -> None:
    import resource

    from bench.broker_process import broker_server
    from bench.scenarios import fanout, fanout_clients
    from broker.client import Client
    from broker.client.blocking import SyncClient

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def report(count: int, used: float) -> None:
        kind = "blocking SyncClient" if blocking else "trio Client"
        print(f"{kind}: {count} events in 4 s: {used / count * 1e6:.0f} us of process CPU each")

    with tempfile.TemporaryDirectory() as tmp, broker_server(os.path.join(tmp, "data")) as server:
        (arn,) = trio.run(fanout._setup, server.endpoint, 1)
        start_ns = time.monotonic_ns() + 1_000_000_000
        producer = fanout._child(
            "producer",
            "--endpoint",
            server.endpoint,
            "--rate",
            "1000",
            "--seconds",
            "7",
            "--start",
            str(start_ns),
        )

        async def run() -> None:
            async with (
                Client(server.endpoint) as client,
                client.subscribe_to_shard(arn, fanout_clients.SHARD, {"Type": "LATEST"}) as events,
            ):
                await trio.sleep(3)
                before = cpu()
                count = 0
                with trio.move_on_after(4):
                    async for event in events.wire():
                        count += 1
                        fanout_clients.due_times(event)
                report(count, cpu() - before)

        def run_blocking() -> None:
            with (
                SyncClient(server.endpoint) as client,
                client.subscribe_to_shard(arn, fanout_clients.SHARD, {"Type": "LATEST"}) as events,
            ):
                wire = events.wire()
                until = time.monotonic() + 3
                for _ in wire:  # heartbeats, then the producer's first events
                    if time.monotonic() >= until:
                        break
                before = cpu()
                count = 0
                until = time.monotonic() + 4
                for event in wire:
                    count += 1
                    fanout_clients.due_times(event)
                    if time.monotonic() >= until:
                        break
                report(count, cpu() - before)

        if blocking:
            run_blocking()
        else:
            trio.run(run)
        producer.communicate(timeout=60)


def bench_aws() -> None:
    import base64
    import json

    from broker.protocol import aws

    rng = random.Random(1)
    body = json.dumps(
        {
            "StreamName": "s",
            "Records": [
                {"Data": base64.b64encode(rng.randbytes(100)).decode(), "PartitionKey": f"k{i}"}
                for i in range(RECORDS)
            ],
        }
    ).encode()
    answer = {
        "FailedRecordCount": 0,
        "Records": [
            {"SequenceNumber": str(10**28 + i), "ShardId": "shardId-000000000001"}
            for i in range(RECORDS)
        ],
    }
    _per_record("json.loads (stdlib)", lambda: json.loads(body))
    _per_record("aws.JSON.decode_request", lambda: aws.JSON.decode_request(body))
    _per_record("json.dumps (stdlib) of the answer", lambda: json.dumps(answer).encode())
    _per_record("aws.JSON.encode_response", lambda: aws.JSON.encode_response(answer))


def bench_push(count: int = 20_000) -> None:
    import types

    import h2.config
    import h2.connection
    import h2.settings
    import trio.testing

    from broker.server.h2_connection import H2ServerConnection, _Stream

    async def main() -> None:
        near, _far = trio.testing.memory_stream_pair()
        broker = types.SimpleNamespace(config=BrokerConfig())
        server = H2ServerConnection(near, broker, ServerMetrics())  # type: ignore[arg-type]
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        client.initiate_connection()
        client.increment_flow_control_window(1 << 30)
        client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1})
        stream_id = client.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "http"), (":authority", "b"), (":path", "/")]
        client.send_headers(stream_id, headers, end_stream=True)
        server.h2.initiate_connection()
        server.h2.receive_data(client.data_to_send())
        server.h2.send_headers(stream_id, [(b":status", b"200")])
        server.h2.data_to_send()
        event = bytes(420)
        stream = _Stream(stream_id, "POST", "/")
        h2c = server.h2
        started = time.perf_counter()
        for _ in range(count):
            h2c.send_data(stream_id, event)
            h2c.data_to_send()
        print(f"  h2 send_data: {(time.perf_counter() - started) / count * 1e6:.2f} us per push")
        started = time.perf_counter()
        for _ in range(count):
            server.push_nowait(stream, event)
            server.unsent.clear()
        print(f"  push_nowait:  {(time.perf_counter() - started) / count * 1e6:.2f} us per push")

    trio.run(main)


def _process_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_wakeup(count: int = 1000) -> None:
    import asyncio
    import select
    import socket

    def waiter(mode: str) -> float:
        sender, receiver = socket.socketpair()
        child = os.fork()
        if child == 0:  # the sender: 500 B every 3 ms, a few more than are read
            receiver.close()
            for _ in range(count + 20):
                time.sleep(0.003)
                sender.send(b"x" * 500)
            os._exit(0)
        sender.close()
        if mode == "blocking recv":
            start = _process_cpu()
            for _ in range(count):
                receiver.recv(65536)
        elif mode == "epoll loop":
            receiver.setblocking(False)
            poller = select.epoll()
            poller.register(receiver.fileno(), select.EPOLLIN)
            start = _process_cpu()
            for _ in range(count):
                poller.poll()
                receiver.recv(65536)
        elif mode in ("trio receive_some", "trio SocketReader"):

            async def read() -> float:
                from broker.protocol.receiving import SocketReader

                stream = trio.SocketStream(trio.socket.from_stdlib_socket(receiver))
                reader = SocketReader(stream, 65536)
                begun = _process_cpu()
                for _ in range(count):
                    if mode == "trio receive_some":
                        await stream.receive_some(65536)
                    else:
                        await reader.receive()
                return begun

            start = trio.run(read)
        else:

            async def read_asyncio() -> float:
                loop = asyncio.get_running_loop()
                receiver.setblocking(False)
                begun = _process_cpu()
                for _ in range(count):
                    await loop.sock_recv(receiver, 65536)
                return begun

            start = asyncio.run(read_asyncio())
        used = _process_cpu() - start
        os.waitpid(child, 0)
        receiver.close()
        return used / count

    modes = ("blocking recv", "epoll loop", "trio receive_some", "trio SocketReader")
    for mode in (*modes, "asyncio sock_recv"):
        print(f"{mode:20s} {waiter(mode) * 1e6:6.1f} us of process CPU per wake-up")


#: Measured from 3 s into the subscription to 7 s: 4 s of the 1,000 records/s load.
_FLOOR_FROM_S, _FLOOR_UNTIL_S = 3.0, 7.0


def _floor_blocking(
    host: str, port: int, conn: Any, hello: bytes, state: dict[str, int], handle: Any
) -> float:
    import socket

    sock = socket.create_connection((host, port))
    sock.sendall(hello)
    began, start = time.monotonic(), 0.0
    while time.monotonic() < began + _FLOOR_UNTIL_S:
        if not start and time.monotonic() > began + _FLOOR_FROM_S:
            start, state["events"] = _process_cpu(), 0
        out = handle(conn, sock.recv(256 * 1024), state)
        if out:
            sock.sendall(out)
    sock.close()
    return start


async def _floor_trio(
    host: str, port: int, conn: Any, hello: bytes, state: dict[str, int], handle: Any
) -> float:
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(hello)
    began, start = time.monotonic(), 0.0
    while time.monotonic() < began + _FLOOR_UNTIL_S:
        if not start and time.monotonic() > began + _FLOOR_FROM_S:
            start, state["events"] = _process_cpu(), 0
        out = handle(conn, await stream.receive_some(256 * 1024), state)
        if out:
            await stream.send_all(out)
    await stream.aclose()
    return start


def bench_subscriber_floor() -> None:
    from urllib.parse import urlsplit

    import h2.config
    import h2.connection
    import h2.events

    from bench.broker_process import broker_server
    from bench.scenarios import fanout, fanout_clients
    from broker.protocol import h2_patch

    h2_patch.apply()

    def connection(arn: str) -> tuple[h2.connection.H2Connection, bytes]:
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24})
        conn.increment_flow_control_window(64 << 20)
        body = msgpack.packb(
            {
                "ConsumerARN": arn,
                "ShardId": fanout_clients.SHARD,
                "StartingPosition": {"Type": "LATEST"},
            }
        )
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(
            stream_id,
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":authority", b"bench"),
                (b":path", b"/v1/SubscribeToShard"),
                (b"content-type", b"application/msgpack"),
            ],
        )
        conn.send_data(stream_id, body, end_stream=True)
        return conn, conn.data_to_send()

    def handle(conn: h2.connection.H2Connection, data: bytes, state: dict[str, int]) -> bytes:
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                state["events"] += 1
                state["taken"] += event.flow_controlled_length or 0
                if state["taken"] > 1 << 22:
                    conn.acknowledge_received_data(state["taken"], event.stream_id)
                    state["taken"] = 0
                fanout_clients.due_times(event.data or b"")
        return conn.data_to_send()

    partial = {"bytes": b""}

    def split_frames(conn: Any, data: bytes, state: dict[str, int]) -> bytes:
        # The frames split by hand, as the client's ``_Connection.receive`` does.
        buffer = partial["bytes"] + data
        at = 0
        while at + 9 <= len(buffer):
            end = at + 9 + int.from_bytes(buffer[at : at + 3], "big")
            if end > len(buffer):
                break
            if buffer[at + 3] == 0:
                state["events"] += 1
                fanout_clients.due_times(buffer[at + 9 : end])
            at = end
        partial["bytes"] = buffer[at:]
        return b""

    def recv_only(conn: Any, data: bytes, state: dict[str, int]) -> bytes:
        state["events"] += 1
        return b""

    variants = (
        ("trio, one task", handle),
        ("blocking socket", handle),
        ("blocking, own frames", split_frames),
        ("blocking, recv only", recv_only),
    )
    for mode, handler in variants:
        with (
            tempfile.TemporaryDirectory() as tmp,
            broker_server(os.path.join(tmp, "data")) as server,
        ):
            (arn,) = trio.run(fanout._setup, server.endpoint, 1)
            parts = urlsplit(server.endpoint)
            host, port = parts.hostname or "127.0.0.1", parts.port or 0
            start_ns = time.monotonic_ns() + 1_000_000_000
            producer = fanout._child(
                "producer", "--endpoint", server.endpoint, "--rate", "1000",
                "--seconds", "8", "--start", str(start_ns),
            )  # fmt: skip
            conn, hello = connection(arn)
            state = {"events": 0, "taken": 0}
            if mode.startswith("blocking"):
                start = _floor_blocking(host, port, conn, hello, state, handler)
            else:
                start = trio.run(_floor_trio, host, port, conn, hello, state, handler)
            used = _process_cpu() - start
            producer.communicate(timeout=60)
            print(
                f"{mode:20s} {state['events']} events in 4 s: "
                f"{used / max(state['events'], 1) * 1e6:.0f} us of process CPU each"
            )


BENCHES = {
    "answer": bench_answer,
    "aws": bench_aws,
    "push": bench_push,
    "wakeup": bench_wakeup,
    "subscriber-floor": bench_subscriber_floor,
    "subscriber": bench_subscriber,
    "request": bench_request,
    "producer": bench_producer,
    "md5": bench_md5,
    "decode": bench_decode,
    "commit": bench_commit,
    "route": bench_route,
    "gil": bench_gil,
}


def main(argv: list[str]) -> None:
    for name in argv or list(BENCHES):
        print(f"-- {name}")
        BENCHES[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
