"""Streamed responses: a failing producer of events resets its stream, the connection goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h2.events
import h2.settings
import pytest
import trio
from h2.errors import ErrorCodes

from broker.operations import OPERATIONS, Broker, Streamed
from broker.operations.base import BodySink

from .harness import RawH2, running_server


async def start(connection: RawH2, operation: str) -> int:
    """Call a test operation that streams its answer (an empty map as the request)."""
    return await connection.request(
        "POST",
        f"/v1/{operation}",
        body=b"\x80",
        extra_headers=[(b"content-type", b"application/msgpack")],
    )


class Failing(Streamed):
    async def run(self, sink: BodySink) -> None:
        await sink.send(b"\x80")  # one event: an empty map
        raise RuntimeError("a bug in the producer of events")


async def test_a_failing_stream_is_reset_and_the_connection_serves_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(broker: Broker, request: dict[str, Any]) -> Streamed:
        return Failing()

    monkeypatch.setitem(OPERATIONS, "TestFailingStream", failing)
    async with running_server(tmp_path, monkeypatch) as server:
        connection = await RawH2.open(server.port)
        with trio.fail_after(10):
            stream_id = await start(connection, "TestFailingStream")
            status, body = await connection.response(stream_id)
        assert status == 200 and body == b"\x80"
        resets = [
            e
            for e in connection.events
            if isinstance(e, h2.events.StreamReset) and e.stream_id == stream_id
        ]
        assert resets and resets[0].error_code == ErrorCodes.INTERNAL_ERROR
        with trio.fail_after(10):
            again = await connection.request("GET", "/healthz")
            assert (await connection.response(again))[0] == 200


class Pushes(Streamed):
    """``send_nowait`` first (the hub's path), ``send`` when it is refused; records which."""

    def __init__(self, chunks: list[bytes], outcome: list[bool], reset_seen: trio.Event) -> None:
        self.chunks = chunks
        self.outcome = outcome
        self.reset_seen = reset_seen
        self.done = trio.Event()

    async def run(self, sink: BodySink) -> None:
        for chunk in self.chunks:
            taken = sink.send_nowait(chunk)
            self.outcome.append(taken)
            if not taken:
                await sink.send(chunk)
        await self.reset_seen.wait()
        self.outcome.append(sink.send_nowait(b"after the reset"))
        self.done.set()


@pytest.mark.parametrize(
    "stream_window", [20_000, 1 << 20], ids=["stream-bound", "connection-bound"]
)
async def test_pushes_framed_outside_h2_keep_its_frames_windows_and_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream_window: int
) -> None:
    # Larger than a frame (16 KiB, the client's default), and more than the
    # windows in all: some pushes must be refused and waited for. The stream's
    # window is below the connection's (64 KiB) or above it, so that a debit
    # missing from either would let h2 overrun the client's.
    sizes = [1, 400, 16_384, 16_385, 40_000, 70_000, 3, 65_535, 500, 20_000]
    chunks = [bytes([i]) * size for i, size in enumerate(sizes)]
    outcome: list[bool] = []
    reset_seen = trio.Event()
    producer = Pushes(chunks, outcome, reset_seen)

    async def pushes(broker: Broker, request: dict[str, Any]) -> Streamed:
        return producer

    monkeypatch.setitem(OPERATIONS, "TestPushes", pushes)
    async with running_server(tmp_path, monkeypatch) as server:
        connection = await RawH2.open(server.port)
        client = connection.h2
        client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: stream_window})
        with trio.fail_after(10):
            stream_id = await start(connection, "TestPushes")
            received = b""
            while len(received) < sum(sizes):
                # h2 on the client refuses any frame over its size or its windows.
                await connection._pump()
                assert not connection.closed, connection.terminated()
                for event in connection.events:
                    if isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                        received += event.data or b""
                        client.acknowledge_received_data(event.flow_controlled_length, stream_id)
                connection.events.clear()
                await connection.stream.send_all(client.data_to_send())
        assert received == b"".join(chunks)
        assert True in outcome and False in outcome
        # After the client resets the stream, a push is refused (no frame, no error).
        client.reset_stream(stream_id)
        await connection.stream.send_all(client.data_to_send())
        with trio.fail_after(10):
            # Frames are handled in order: once this is answered, the reset was seen.
            again = await connection.request("GET", "/healthz")
            assert (await connection.response(again))[0] == 200
        reset_seen.set()
        with trio.fail_after(10):
            await producer.done.wait()
        assert outcome[len(chunks) :] == [False]
