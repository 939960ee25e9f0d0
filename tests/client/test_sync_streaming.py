"""The blocking subscriber (``SyncClient.subscribe_to_shard``) against a real server.

The server (the real operation table and fan-out hub, on 127.0.0.1) runs in
the test's trio loop; the blocking subscriber runs in a worker thread
(``trio.to_thread``), as a program without an event loop would, and calls back
into the loop to write records (``trio.from_thread``). Every blocking read is
bounded by a ``read_timeout``; nothing sleeps to wait for a condition.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import h2.config
import h2.connection
import h2.events
import msgpack
import pytest
import trio

from broker.client import (
    Client,
    ConnectionLostError,
    ErrorEvent,
    HeartbeatEvent,
    RecordsEvent,
    RequestTimeoutError,
    records_of,
)
from broker.client.blocking import SyncClient
from broker.client.sync_streaming import SyncShardEvents, _BlockingStream, subscribe_to_shard
from broker.errors import ResourceInUseError, ResourceNotFoundError
from tests.e2e.harness import Served, serve
from tests.test_cli import Server

S0 = "shardId-000000000000"
TRIM = {"Type": "TRIM_HORIZON"}
LIMIT_S = 30.0

T = TypeVar("T")


@dataclass
class Setup:
    served: Served
    client: Client
    consumer_arn: str

    @property
    def endpoint(self) -> str:
        return self.served.endpoint

    def put(self, *datas: bytes) -> list[str]:
        """Records written from the worker thread, through the loop's client."""
        return trio.from_thread.run(put, self.client, *datas)

    def subscriptions(self) -> int:
        """Live subscriptions in the broker's hub, read on the loop's thread."""
        hub = self.served.broker.extras["fanout"]
        return int(trio.from_thread.run_sync(hub.statistics)["subscriptions"])


async def put(client: Client, *datas: bytes) -> list[str]:
    result = await client.put_records("s", [{"Data": d, "PartitionKey": "k"} for d in datas])
    return [entry.sequence_number or "" for entry in result.records]


@asynccontextmanager
async def open_setup(tmp_path: Path, **settings: Any) -> AsyncIterator[Setup]:
    async with (
        serve(tmp_path / "data", **settings) as served,
        Client(served.endpoint) as client,
    ):
        await client.create_stream("s", 1)
        stream_arn = (await client.describe_stream_summary("s")).stream_arn
        consumer = await client.register_stream_consumer(stream_arn, "reader")
        yield Setup(served, client, consumer.consumer_arn)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async with open_setup(
        tmp_path,
        subscription_lifetime_s=30.0,
        subscription_heartbeat_s=0.05,
        subscription_takeover_window_s=0.5,
    ) as opened:
        yield opened


async def in_thread(fn: Callable[[], T]) -> T:
    return await trio.to_thread.run_sync(fn)


def records(events: SyncShardEvents, count: int) -> list[tuple[str, bytes]]:
    """The next ``count`` records' (sequence number, data), skipping heartbeats."""
    out: list[tuple[str, bytes]] = []
    for event in events:
        if isinstance(event, RecordsEvent):
            out += [(record.sequence_number, record.data) for record in records_of(event)]
            if len(out) >= count:
                return out
    raise AssertionError(f"the events ended after {len(out)} of {count} records")


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` from the worker thread until it holds, within ``LIMIT_S``."""
    done = threading.Event()
    deadline = trio.from_thread.run_sync(trio.current_time) + LIMIT_S
    while not condition():
        if trio.from_thread.run_sync(trio.current_time) > deadline:
            raise AssertionError("the condition did not hold in time")
        done.wait(0.01)


async def test_records_arrive_in_order_from_the_trim_horizon_and_the_tail(setup: Setup) -> None:
    def read() -> None:
        first = setup.put(b"a", b"b")
        with subscribe_to_shard(
            setup.endpoint, setup.consumer_arn, S0, TRIM, read_timeout=LIMIT_S
        ) as events:
            assert records(events, 2) == list(zip(first, [b"a", b"b"], strict=True))
            later = setup.put(b"c", b"d", b"e")
            assert records(events, 3) == list(zip(later, [b"c", b"d", b"e"], strict=True))

    await in_thread(read)


async def test_wire_gives_each_event_as_its_bytes(setup: Setup) -> None:
    def read() -> None:
        sequences = setup.put(b"x" * 100, b"y" * 200)
        with (
            SyncClient(setup.endpoint) as client,
            client.subscribe_to_shard(setup.consumer_arn, S0, TRIM, read_timeout=LIMIT_S) as events,
        ):
            for wire in events.wire():
                event = msgpack.unpackb(wire, raw=False)
                if event.get("Records"):
                    break
        assert [data for _, _, data in event["Records"]] == [b"x" * 100, b"y" * 200]
        assert event["ContinuationSequenceNumber"] == sequences[-1]

    await in_thread(read)


async def test_errors_answered_before_streaming_are_raised(setup: Setup) -> None:
    def read() -> None:
        unknown = setup.consumer_arn.replace("consumer/reader:", "consumer/nobody:")
        with (
            pytest.raises(ResourceNotFoundError),
            subscribe_to_shard(setup.endpoint, unknown, S0, TRIM),
        ):
            pass
        # A second subscription within the takeover window is refused.
        with (
            subscribe_to_shard(setup.endpoint, setup.consumer_arn, S0, TRIM),
            pytest.raises(ResourceInUseError),
            subscribe_to_shard(setup.endpoint, setup.consumer_arn, S0, TRIM),
        ):
            pass

    await in_thread(read)


async def test_heartbeats_come_while_idle(setup: Setup) -> None:
    def read() -> None:
        [sequence] = setup.put(b"a")
        with subscribe_to_shard(
            setup.endpoint, setup.consumer_arn, S0, TRIM, read_timeout=LIMIT_S
        ) as events:
            records(events, 1)
            event = next(events)
        assert isinstance(event, HeartbeatEvent)
        assert event.continuation_sequence == int(sequence)

    await in_thread(read)


async def test_no_bytes_within_the_read_timeout_is_a_named_error(tmp_path: Path) -> None:
    async with open_setup(tmp_path, subscription_heartbeat_s=60.0) as setup:

        def read() -> None:
            with (
                subscribe_to_shard(
                    setup.endpoint, setup.consumer_arn, S0, TRIM, read_timeout=0.2
                ) as events,
                pytest.raises(RequestTimeoutError),
            ):
                next(events)

        await in_thread(read)


async def test_a_takeover_ends_the_old_subscription_with_an_error_event(setup: Setup) -> None:
    def read() -> list[Any]:
        with subscribe_to_shard(
            setup.endpoint, setup.consumer_arn, S0, TRIM, read_timeout=LIMIT_S
        ) as old:
            deadline = trio.from_thread.run_sync(trio.current_time) + LIMIT_S
            while True:  # until the takeover window (0.5 s) has passed
                try:
                    with subscribe_to_shard(setup.endpoint, setup.consumer_arn, S0, TRIM):
                        return list(old)
                except ResourceInUseError:
                    assert trio.from_thread.run_sync(trio.current_time) < deadline
                    threading.Event().wait(0.05)

    events = await in_thread(read)
    assert isinstance(events[-1], ErrorEvent)
    assert events[-1].error_code == "ResourceInUseException"


async def test_leaving_early_ends_the_subscription_on_the_broker(setup: Setup) -> None:
    def read() -> None:
        setup.put(b"a")
        with subscribe_to_shard(
            setup.endpoint, setup.consumer_arn, S0, TRIM, read_timeout=LIMIT_S
        ) as events:
            records(events, 1)
            assert setup.subscriptions() == 1
        wait_until(lambda: setup.subscriptions() == 0)

    await in_thread(read)


async def test_an_unread_subscription_holds_its_buffer_bound_while_another_reads(
    setup: Setup,
) -> None:
    stream_arn = (await setup.client.describe_stream_summary("s")).stream_arn
    other = (await setup.client.register_stream_consumer(stream_arn, "other")).consumer_arn

    def read() -> None:
        payload = b"x" * (64 * 1024)
        with (
            subscribe_to_shard(
                setup.endpoint, setup.consumer_arn, S0, TRIM, read_timeout=LIMIT_S
            ) as stalled,
            subscribe_to_shard(setup.endpoint, other, S0, TRIM, read_timeout=LIMIT_S) as reading,
        ):
            total = 0
            for _ in range(8):  # 8 MiB in 1 MiB requests
                setup.put(*[payload] * 16)
                total += 16
                assert len(records(reading, 16)) == 16
            # Eight times the stalled one's window went by while it read nothing,
            # and it lost nothing.
            got = records(stalled, total)
            assert [data for _, data in got] == [payload] * total

    await in_thread(read)


def test_a_lost_connection_raises_connection_lost_after_what_arrived(server: Server) -> None:
    process = server
    with SyncClient(process.endpoint) as client:
        client.create_stream("s", 1)
        stream_arn = client.describe_stream_summary("s").stream_arn
        arn = client.register_stream_consumer(stream_arn, "reader").consumer_arn
        sequences = [
            entry.sequence_number
            for entry in client.put_records("s", [{"Data": b"a", "PartitionKey": "k"}]).records
        ]
        with client.subscribe_to_shard(arn, S0, TRIM, read_timeout=LIMIT_S) as events:
            assert records(events, 1) == [(sequences[0], b"a")]
            process.process.send_signal(signal.SIGKILL)
            process.process.wait(timeout=LIMIT_S)
            with pytest.raises(ConnectionLostError):
                for _ in events:
                    pass


def test_nothing_listening_is_connection_lost() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        pytest.raises(ConnectionLostError),
        subscribe_to_shard(f"http://127.0.0.1:{port}", "arn", S0, TRIM, timeout=5),
    ):
        pass


def test_the_window_is_granted_back_only_for_what_was_taken() -> None:
    """Against an h2 server on a socket pair, which checks every grant against its windows."""
    window = 128 * 1024
    near, far = socket.socketpair()
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    server.initiate_connection()
    stream = _BlockingStream(near, "t", "http", window)
    with near, far:
        stream.send_request("/v1/SubscribeToShard", b"{}", "application/msgpack")
        far.setblocking(False)

        def serve() -> list[h2.events.Event]:
            """What the client sent so far, through the server's h2; its answer written back."""
            events: list[h2.events.Event] = []
            with contextlib.suppress(BlockingIOError):
                while data := far.recv(1 << 20):
                    events += server.receive_data(data)
            far.sendall(server.data_to_send())
            return events

        [stream_id] = [e.stream_id for e in serve() if isinstance(e, h2.events.RequestReceived)]
        server.send_headers(stream_id, [(b":status", b"200")])
        chunk = 16 * 1024
        while server.local_flow_control_window(stream_id) >= chunk:  # the whole window
            server.send_data(stream_id, b"x" * chunk)
        far.sendall(server.data_to_send())
        assert server.local_flow_control_window(stream_id) < chunk
        stream.wait_for_headers(time.monotonic() + LIMIT_S)
        assert stream.status == 200
        taken = 0
        while taken + chunk < window // 2:  # under half a window: nothing granted yet
            taken += len(stream.receive_some())
            assert not [e for e in serve() if isinstance(e, h2.events.WindowUpdated)]
        taken += len(stream.receive_some())  # half a window: granted, exactly what was taken
        updates = [e for e in serve() if isinstance(e, h2.events.WindowUpdated)]
        assert [(e.stream_id, e.delta) for e in updates] == [(stream_id, taken)]
        assert server.local_flow_control_window(stream_id) >= taken
