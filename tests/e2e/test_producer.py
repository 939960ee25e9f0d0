"""``Producer`` against a real server: order, retries, lost answers, backpressure, resharding.

The producer reaches the broker through ``Proxy``, a TCP proxy in the test
that can cut every connection (a dropped connection), hold the broker's
bytes (so answers do not arrive and the producer's buffer fills), or let a
request through and then cut the connection just before the broker's answer
reaches the client: the answer's HEADERS frame comes after the durable
commit, so the broker has the batch and the client does not know it. Records
are read back over a direct connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from broker.client import Backoff, Client, Producer
from broker.model import MAX_HASH_KEY, shard_id

from .harness import Served, read_all, serve

FAST = Backoff(initial_s=0.01, max_s=0.2, full_jitter=True)
S0, S1, S2 = shard_id(0), shard_id(1), shard_id(2)
#: h2 frame types (RFC 9113 section 6).
HEADERS = 0x1


class Proxy:
    """A TCP proxy to the broker with faults on demand (module docstring)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self.connections: list[trio.CancelScope] = []
        self.flowing = trio.Event()
        self.flowing.set()
        self.lose_answer = False
        self.answer_lost = trio.Event()
        self.accepted = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Drop every open connection (both sides see it closed)."""
        for scope in self.connections:
            scope.cancel()
        self.connections.clear()

    def hold(self) -> None:
        """Stop forwarding the broker's bytes until ``release``."""
        self.flowing = trio.Event()

    def release(self) -> None:
        self.flowing.set()

    async def run(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._serve, listeners)

    async def _serve(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream)
        with trio.CancelScope() as scope:
            self.connections.append(scope)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._requests, client, upstream, nursery.cancel_scope)
                nursery.start_soon(self._answers, upstream, client, nursery.cancel_scope)
        for stream in (client, upstream):
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _requests(
        self, source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope
    ) -> None:
        try:
            while chunk := await source.receive_some(65536):
                await sink.send_all(chunk)
        except trio.BrokenResourceError:
            pass
        scope.cancel()

    async def _answers(
        self, source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope
    ) -> None:
        """Forward whole h2 frames, so that an answer's HEADERS frame can be held back."""
        buffer = b""
        try:
            while chunk := await source.receive_some(65536):
                buffer += chunk
                frames, buffer = _whole_frames(buffer)
                await self.flowing.wait()
                out = b""
                for frame in frames:
                    if self.lose_answer and frame[3] == HEADERS:
                        self.lose_answer = False
                        await sink.send_all(out)
                        self.answer_lost.set()
                        scope.cancel()
                        return
                    out += frame
                await sink.send_all(out)
        except trio.BrokenResourceError:
            pass
        scope.cancel()


def _whole_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    frames = []
    while len(buffer) >= 9:
        end = 9 + int.from_bytes(buffer[:3], "big")
        if len(buffer) < end:
            break
        frames.append(buffer[:end])
        buffer = buffer[end:]
    return frames, buffer


@asynccontextmanager
async def broker_behind_proxy(
    tmp_path: Path, shards: int = 2, **settings: Any
) -> AsyncIterator[tuple[Served, Proxy, Client]]:
    async with serve(tmp_path / "data", **settings) as served, trio.open_nursery() as nursery:
        proxy = Proxy(served.port)
        await nursery.start(proxy.run)
        async with Client(served.endpoint) as client:
            await client.create_stream("s", shards)
            yield served, proxy, client
        nursery.cancel_scope.cancel()


async def log_of(client: Client, *shards: str) -> list[tuple[str, bytes]]:
    """(partition key, data) of every record of ``shards``, in each shard's order."""
    return [(r.partition_key, r.data) for s in shards for r in await read_all(client, "s", s)]


def per_key(pairs: list[tuple[str, bytes]]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for key, data in pairs:
        out.setdefault(key, []).append(data)
    return out


def first_copies(values: list[bytes]) -> list[bytes]:
    return list(dict.fromkeys(values))


@pytest.mark.parametrize("idempotent", [True, False])
async def test_order_per_key_survives_throttling_and_a_dropped_connection(
    tmp_path: Path, idempotent: bool
) -> None:
    records = [(f"key-{i % 6}", f"{i:05d}".encode()) for i in range(900)]
    async with broker_behind_proxy(tmp_path, shard_write_records_per_s=300) as (_, proxy, client):
        async with Producer(
            proxy.endpoint,
            "s",
            backoff=FAST,
            max_retries=100,
            max_batch_records=100,
            idempotent=idempotent,
        ) as producer:
            handles = [await producer.send(data, key) for key, data in records[:450]]
            with trio.fail_after(20):
                await handles[200]
            connections = proxy.accepted
            proxy.cut()
            handles += [await producer.send(data, key) for key, data in records[450:]]
            with trio.fail_after(30):
                await producer.flush()
            results = [await h for h in handles]
            stats = producer.statistics()
        stored = {
            (shard, r.sequence_number): (r.partition_key, r.data)
            for shard in (S0, S1)
            for r in await read_all(client, "s", shard)
        }
        logged = await log_of(client, S0, S1)
    assert proxy.accepted > connections  # the producer did reconnect
    assert stats.records_retried > 0  # ... and was throttled
    assert (stats.records_sent, stats.records_failed) == (900, 0)
    # Each handle names where its record is.
    assert [stored[result] for result in results] == records
    got, expected = per_key(logged), per_key(records)
    if idempotent:
        assert got == expected
        assert len(logged) == 900
    else:
        # At least once: a retry after the cut may repeat records, never reorder them.
        assert {k: first_copies(v) for k, v in got.items()} == expected
        assert len(logged) - 900 <= stats.records_possibly_duplicated


async def test_a_lost_answer_after_the_commit_leaves_one_copy(tmp_path: Path) -> None:
    async with broker_behind_proxy(tmp_path, shards=1) as (_, proxy, client):
        async with Producer(proxy.endpoint, "s", backoff=FAST) as producer:
            await producer.send_and_wait(b"before", "k")
            proxy.lose_answer = True
            with trio.fail_after(10):
                shard, sequence = await producer.send_and_wait(b"once", "k")
            assert proxy.answer_lost.is_set()
            stats = producer.statistics()
        records = await read_all(client, "s", S0)
    assert [r.data for r in records] == [b"before", b"once"]
    assert (shard, sequence) == (S0, records[1].sequence_number)
    assert stats.records_deduplicated == 1
    assert stats.records_possibly_duplicated == 0


async def test_without_idempotence_a_lost_answer_may_duplicate_and_is_counted(
    tmp_path: Path,
) -> None:
    async with broker_behind_proxy(tmp_path, shards=1) as (_, proxy, client):
        async with Producer(proxy.endpoint, "s", backoff=FAST, idempotent=False) as producer:
            proxy.lose_answer = True
            with trio.fail_after(10):
                await producer.send_and_wait(b"twice", "k")
            assert proxy.answer_lost.is_set()
            assert producer.statistics().records_possibly_duplicated == 1
        records = await read_all(client, "s", S0)
    assert [r.data for r in records] == [b"twice", b"twice"]


async def test_a_full_buffer_blocks_send_until_answers_arrive(tmp_path: Path) -> None:
    size = 100_000
    async with broker_behind_proxy(tmp_path, shards=1) as (_, proxy, client):
        async with Producer(proxy.endpoint, "s", max_buffered_bytes=1 << 20, linger=0) as producer:
            proxy.hold()
            handles = [await producer.send(bytes([i]) * size, "k") for i in range(10)]
            with trio.move_on_after(0.5) as waited:
                await producer.send(b"\x0a" * size, "k")
            assert waited.cancelled_caught
            assert not any(h.done() for h in handles)
            assert producer.statistics().records_pending == 10
            proxy.release()
            with trio.fail_after(10):
                handles.append(await producer.send(b"\x0b" * size, "k"))
                await producer.flush()
            assert all(h.done() for h in handles)
        records = await read_all(client, "s", S0)
    assert [r.data[0] for r in records] == [*range(10), 11]


@pytest.mark.parametrize("idempotent", [True, False])
async def test_after_a_split_the_producer_routes_to_the_children(
    tmp_path: Path, idempotent: bool
) -> None:
    keys = [f"key-{n}" for n in range(16)]
    records = [(keys[i % 16], f"{i:04d}".encode()) for i in range(120)]
    async with broker_behind_proxy(tmp_path, shards=1) as (_, proxy, client):
        async with Producer(proxy.endpoint, "s", backoff=FAST, idempotent=idempotent) as producer:
            before = [await producer.send(data, key) for key, data in records[:40]]
            await producer.flush()
            await client.split_shard("s", S0, str((MAX_HASH_KEY + 1) // 2))
            after = [await producer.send(data, key) for key, data in records[40:80]]
            with trio.fail_after(10):
                await producer.flush()
            assert producer.shard_ids == [S1, S2]
            last = [await producer.send(data, key) for key, data in records[80:]]
            with trio.fail_after(10):
                await producer.flush()
            shards = [(await h)[0] for h in before + after + last]
        logged = await log_of(client, S0, S1, S2)
    assert set(shards[:40]) == {S0}
    assert set(shards[40:]) == {S1, S2}
    assert per_key(logged) == per_key(records)


async def test_statistics_add_up(tmp_path: Path) -> None:
    records = [(f"k{i % 50}", bytes(20 + i % 30)) for i in range(3000)]
    async with broker_behind_proxy(tmp_path, shards=4) as (_, proxy, client):
        async with Producer(proxy.endpoint, "s", max_batch_records=200) as producer:
            handles = [await producer.send(data, key) for key, data in records]
            with trio.fail_after(20):
                await producer.flush()
            stats = producer.statistics()
            results = [await h for h in handles]
        logged = await log_of(client, *(shard_id(n) for n in range(4)))
    assert len(logged) == len(set(results)) == 3000
    assert (stats.records_sent, stats.records_failed, stats.records_pending) == (3000, 0, 0)
    assert stats.bytes_sent == sum(len(d) + len(k) for k, d in records)
    assert stats.batches == stats.requests >= 3000 // 200
    assert stats.mean_batch_records == pytest.approx(3000 / stats.batches)
    assert stats.records_retried == stats.records_deduplicated == 0
    assert stats.latency_p50_ms is not None
    assert stats.latency_p90_ms is not None and stats.latency_p99_ms is not None
    assert 0 < stats.latency_p50_ms <= stats.latency_p90_ms <= stats.latency_p99_ms


async def test_a_producer_can_use_the_callers_client(tmp_path: Path) -> None:
    async with broker_behind_proxy(tmp_path, shards=2) as (served, _, client):
        async with Producer(served.endpoint, "s", client=client) as producer:
            shard, sequence = await producer.send_and_wait(b"x", "k")
        # The client stays open for its owner.
        records = await read_all(client, "s", shard)
    assert [(r.data, r.sequence_number) for r in records] == [(b"x", sequence)]
