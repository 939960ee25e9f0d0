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
  HTTP/2: event-loop CPU per record (the whole write path but the wire).
- ``request``: the async client's CPU and wall time per request, one at a
  time, against a broker process (``DescribeStreamSummary``, a few bytes each
  way): the fixed cost of a request on the client side.
- ``subscriber``: one fan-out subscriber's process CPU per pushed event, at
  1,000 records/s (the ``fanout`` producer: 333 events/s), taking events as
  bytes (``ShardEvents.wire``) and reading their due times as the bench does.
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


def bench_route(requests: int = 800, tasks: int = 16) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as path:
            async with open_broker(BrokerConfig(data=path)) as broker:
                await broker.log.create_stream("s", 8)
                metrics = ServerMetrics()
                bodies = [_body(seed) for seed in range(64)]
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
                    f"route() PutRecords: {cpu / records * 1e9:.0f} ns of event-loop CPU "
                    f"per record, {records / wall:,.0f} records/s"
                )

    trio.run(main)


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
    import resource

    from bench.broker_process import broker_server
    from bench.scenarios import fanout, fanout_clients
    from broker.client import Client

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
                before = resource.getrusage(resource.RUSAGE_SELF)
                count = 0
                with trio.move_on_after(4):
                    async for event in events.wire():
                        count += 1
                        fanout_clients.due_times(event)
                after = resource.getrusage(resource.RUSAGE_SELF)
                cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                print(f"{count} events in 4 s: {cpu / count * 1e6:.0f} us of process CPU each")

        trio.run(run)
        producer.communicate(timeout=60)


BENCHES = {
    "answer": bench_answer,
    "subscriber": bench_subscriber,
    "request": bench_request,
    "producer": bench_producer,
    "md5": bench_md5,
    "decode": bench_decode,
    "commit": bench_commit,
    "route": bench_route,
}


def main(argv: list[str]) -> None:
    for name in argv or list(BENCHES):
        print(f"-- {name}")
        BENCHES[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
