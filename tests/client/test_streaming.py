"""Streamed responses (``H2Transport.stream``) against a real server.

A test-only operation, ``TestStream``, answers with a ``Streamed`` body: chunk
``i`` is ``i`` as 4 bytes, repeated, so the client can check order and
completeness. Each request names a ``Probe`` the test holds, which records what
the server's sending task did: bytes sent (``sink.send`` returned), whether it
is parked inside ``sink.send`` now, and how it ended. Every wait is bounded by
``trio.fail_after``; nothing sleeps to wait for a condition.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest
import trio

from broker.client import ConnectionLostError, transport
from broker.client.transport import STREAM_BUFFER, H2Transport, StreamedResponse
from broker.operations import OPERATIONS, Broker, Streamed
from broker.operations.base import BodySink
from broker.protocol.codec import CONTENT_TYPE
from tests.server.harness import Running

KIB = 1024
MIB = 1024 * KIB
LIMIT_S = 20


@dataclass
class Probe:
    """What the server's sender of one streamed response did."""

    sent: int = 0
    in_send: bool = False
    outcome: str = ""
    reached: trio.Event = field(default_factory=trio.Event)
    finished: trio.Event = field(default_factory=trio.Event)


def chunk_of(index: int, size: int) -> bytes:
    return index.to_bytes(4, "big") * (size // 4)


class Chunks(Streamed):
    """``count`` chunks of ``size`` bytes (forever if ``count`` is None)."""

    def __init__(self, probe: Probe, size: int, count: int | None, notify_at: int) -> None:
        self.probe = probe
        self.size = size
        self.count = count
        self.notify_at = notify_at

    async def run(self, sink: BodySink) -> None:
        probe = self.probe
        index = 0
        try:
            while self.count is None or index < self.count:
                probe.in_send = True
                await sink.send(chunk_of(index, self.size))
                probe.in_send = False
                probe.sent += self.size
                index += 1
                if probe.sent >= self.notify_at:
                    probe.reached.set()
            probe.outcome = "ended"
        except trio.BrokenResourceError:
            probe.outcome = "reset"
            raise
        finally:
            probe.in_send = False
            probe.finished.set()


@pytest.fixture
def probes(running: Running, monkeypatch: pytest.MonkeyPatch) -> dict[str, Probe]:
    """Installs ``TestStream`` on the running server; its probes by the request's ``Tag``."""
    table: dict[str, Probe] = {}

    async def stream(broker: Broker, request: dict[str, Any]) -> Chunks:
        probe = table.setdefault(request["Tag"], Probe())
        return Chunks(probe, request["Size"], request.get("Count"), request.get("NotifyAt", 0))

    monkeypatch.setitem(OPERATIONS, "TestStream", stream)
    return table


@asynccontextmanager
async def open_transport(endpoint: str, **settings: Any) -> AsyncIterator[H2Transport]:
    async with trio.open_nursery() as nursery:
        opened = H2Transport(endpoint, nursery, **settings)
        try:
            yield opened
        finally:
            await opened.aclose()
            nursery.cancel_scope.cancel()


def stream_request(tag: str, size: int, count: int | None = None, notify_at: int = 0) -> bytes:
    return msgpack.packb({"Tag": tag, "Size": size, "Count": count, "NotifyAt": notify_at})


def open_stream(opened: H2Transport, body: bytes) -> Any:
    return opened.stream("/v1/TestStream", body, CONTENT_TYPE)


async def read_bytes(response: StreamedResponse, wanted: int, bound: int) -> bytes:
    """At least ``wanted`` bytes of the body, checking the buffer bound after each chunk."""
    body = bytearray()
    while len(body) < wanted:
        chunk = await response.receive_some()
        assert chunk, f"the body ended after {len(body)} of {wanted} bytes"
        body += chunk
        assert response.statistics()["buffered_bytes"] <= bound
    return bytes(body)


def assert_chunks(body: bytes, size: int, first: int = 0) -> None:
    assert len(body) % size == 0
    for i in range(len(body) // size):
        assert body[i * size : (i + 1) * size] == chunk_of(first + i, size), f"chunk {first + i}"


async def test_the_body_arrives_in_order_and_ends(
    running: Running, probes: dict[str, Probe]
) -> None:
    size, count = 16 * KIB, 200
    async with open_transport(running.endpoint) as opened:
        with trio.fail_after(LIMIT_S):
            async with open_stream(opened, stream_request("a", size, count)) as response:
                assert response.status == 200
                assert response.content_type == "application/msgpack"
                body = b"".join([chunk async for chunk in response])
                assert await response.receive_some() == b""  # it stays ended
    assert len(body) == size * count
    assert_chunks(body, size)
    assert probes["a"].outcome == "ended"


async def test_an_error_answered_before_streaming_is_a_plain_body(
    running: Running, probes: dict[str, Probe]
) -> None:
    async with open_transport(running.endpoint) as opened:
        with trio.fail_after(LIMIT_S):
            async with opened.stream("/v1/TestMissing", b"", CONTENT_TYPE) as response:
                assert response.status == 400
                body = b"".join([chunk async for chunk in response])
    assert msgpack.unpackb(body)["__type"] == "ResourceNotFoundException"


@pytest.mark.parametrize("buffer", [STREAM_BUFFER, 256 * KIB])
async def test_an_unread_stream_parks_its_sender_while_another_connection_flows(
    running: Running, probes: dict[str, Probe], buffer: int
) -> None:
    size = 64 * KIB
    async with (
        open_transport(running.endpoint, stream_buffer_bytes=buffer) as stalled_client,
        open_transport(running.endpoint) as other_client,
    ):
        async with open_stream(
            stalled_client, stream_request("stalled", size, None, buffer)
        ) as stalled:
            stalled_probe = probes["stalled"]
            with trio.fail_after(LIMIT_S):
                await stalled_probe.reached.wait()  # the broker sent one window's worth

            # Meanwhile 8 MiB (32 windows) flow on another connection.
            flowing_size = 8 * MIB
            with trio.fail_after(LIMIT_S):
                async with open_stream(
                    other_client, stream_request("flowing", size, flowing_size // size)
                ) as flowing:
                    body = await read_bytes(flowing, flowing_size, STREAM_BUFFER)
                    assert await flowing.receive_some() == b""
            assert_chunks(body, size)

            # The unread stream's sender sent exactly its window and is parked in send.
            assert stalled_probe.sent == buffer
            assert stalled_probe.in_send
            assert not stalled_probe.finished.is_set()
            assert stalled.statistics()["buffered_bytes"] <= buffer

            # Reading it again lets it go on, never beyond the bound.
            with trio.fail_after(LIMIT_S):
                resumed = await read_bytes(stalled, 4 * MIB, buffer)
            assert_chunks(resumed[: len(resumed) - len(resumed) % size], size)
            # The sender counts a chunk once ``sink.send`` returns, so at most the
            # chunk the client is reading now can be uncounted.
            assert stalled_probe.sent >= len(resumed) - size
            assert stalled_probe.sent <= len(resumed) + buffer
        # Leaving the block early reset the stream: the broker's sender stopped.
        with trio.fail_after(LIMIT_S):
            await stalled_probe.finished.wait()
        assert stalled_probe.outcome == "reset"


async def test_stalled_streams_do_not_hold_the_connection_window(
    running: Running, probes: dict[str, Probe], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A connection window of 4 MiB and six unread streams of 1 MiB each: if unread
    # streams held the connection's window, the fifth would never get its window's
    # worth and nothing else would move on the connection.
    monkeypatch.setattr(transport, "CONNECTION_WINDOW", 4 * MIB)
    size = 64 * KIB
    async with open_transport(running.endpoint) as opened, trio.open_nursery() as nursery:
        stop = trio.Event()
        entered = 0

        async def hold(tag: str) -> None:
            nonlocal entered
            async with open_stream(opened, stream_request(tag, size, None, STREAM_BUFFER)):
                entered += 1
                await stop.wait()

        tags = [f"stalled-{i}" for i in range(6)]
        for tag in tags:
            nursery.start_soon(hold, tag)
        with trio.fail_after(LIMIT_S):
            while len(probes) < len(tags):
                await trio.testing.wait_all_tasks_blocked()
            for tag in tags:
                await probes[tag].reached.wait()
        assert entered == len(tags)

        with trio.fail_after(LIMIT_S):
            async with open_stream(opened, stream_request("flowing", size, 128)) as flowing:
                body = await read_bytes(flowing, 8 * MIB, STREAM_BUFFER)
            # The request path is untouched: its own connection answers.
            echoed = await opened.request("/v1/TestEcho", msgpack.packb({"x": 1}), CONTENT_TYPE)
        assert echoed.status == 200
        assert_chunks(body, size)
        assert all(probes[tag].sent == STREAM_BUFFER for tag in tags)
        assert all(probes[tag].in_send for tag in tags)
        assert opened._connection is not opened._streaming
        stop.set()


async def test_leaving_early_resets_the_stream_and_keeps_the_connection(
    running: Running, probes: dict[str, Probe]
) -> None:
    size = 16 * KIB
    async with open_transport(running.endpoint) as opened:
        with trio.fail_after(LIMIT_S):
            async with open_stream(opened, stream_request("early", size)) as response:
                assert_chunks(await read_bytes(response, 3 * size, STREAM_BUFFER), size)
            connection = opened._streaming
            await probes["early"].finished.wait()
            assert probes["early"].outcome == "reset"
            with pytest.raises(trio.ClosedResourceError):
                await response.receive_some()

            async with open_stream(opened, stream_request("after", size, 4)) as response:
                body = b"".join([chunk async for chunk in response])
        assert_chunks(body, size)
        assert opened._streaming is connection


async def test_a_lost_connection_raises_connection_lost_after_what_arrived(
    running: Running, probes: dict[str, Probe]
) -> None:
    size = 16 * KIB
    async with open_transport(running.endpoint) as opened:
        with trio.fail_after(LIMIT_S):
            async with open_stream(
                opened, stream_request("lost", size, None, 8 * size)
            ) as response:
                await probes["lost"].reached.wait()
                for connection in list(running.server.connections):
                    await trio.aclose_forcefully(connection.stream)
                received = bytearray()
                with pytest.raises(ConnectionLostError) as caught:
                    while True:
                        received += await response.receive_some()
            assert caught.value.retriable
            # What arrived before the loss came first, whole and in order.
            assert len(received) >= 8 * size
            assert_chunks(received[: len(received) - len(received) % size], size)

            # The next stream opens a new connection.
            async with open_stream(opened, stream_request("again", size, 2)) as response:
                assert_chunks(b"".join([chunk async for chunk in response]), size)


async def test_a_cancelled_receive_takes_nothing(
    running: Running, probes: dict[str, Probe]
) -> None:
    size = 4 * KIB
    async with open_transport(running.endpoint) as opened:
        with trio.fail_after(LIMIT_S):
            async with open_stream(opened, stream_request("c", size, 2, 2 * size)) as response:
                await probes["c"].finished.wait()
                with trio.CancelScope() as scope:
                    scope.cancel()
                    await response.receive_some()
                body = b"".join([chunk async for chunk in response])
    assert_chunks(body, size)
    assert len(body) == 2 * size


async def test_the_buffer_bound_is_checked(running: Running) -> None:
    async with trio.open_nursery() as nursery:
        with pytest.raises(ValueError):
            H2Transport(running.endpoint, nursery, stream_buffer_bytes=1024)


async def test_streams_left_with_data_in_flight_do_not_leak_the_connection_window(
    running: Running, probes: dict[str, Probe], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each stream is left with its window full (buffered, or still on the wire):
    # with a 4 MiB connection window, a leak of that data would stop the fifth.
    monkeypatch.setattr(transport, "CONNECTION_WINDOW", 4 * MIB)
    size = 64 * KIB
    async with open_transport(running.endpoint) as opened:
        with trio.fail_after(LIMIT_S):
            for i in range(10):
                tag = f"left-{i}"
                request = stream_request(tag, size, None, STREAM_BUFFER)
                async with open_stream(opened, request) as response:
                    await probes[tag].reached.wait()
                    assert await response.receive_some()
                await probes[tag].finished.wait()
            async with open_stream(opened, stream_request("last", size, 128)) as response:
                body = await read_bytes(response, 8 * MIB, STREAM_BUFFER)
    assert_chunks(body, size)
