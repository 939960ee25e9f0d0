"""The client's own handling of streamed DATA frames (``_Connection.receive``), against h2.

The peer is a real h2 server connection in memory: its bytes reach the
client's connection cut at arbitrary points, and what the client writes back
(raw WINDOW_UPDATEs and h2's own output) goes back to it, so h2 on the server
side checks every grant against its windows. Streamed DATA frames bypass the
client's h2; everything else must still reach it, in order.
"""

from __future__ import annotations

import itertools

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.client import transport
from broker.client.transport import StreamedResponse, _Connection, _Pending, _Streaming
from broker.protocol.frames import data_frames

KIB = 1024
WINDOW = 64 * KIB


def server_connection() -> h2.connection.H2Connection:
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    server.initiate_connection()
    return server


def exchange(client: _Connection, server: h2.connection.H2Connection) -> None:
    """What the client has to send (its outbox first, as ``flush`` sends it) reaches the server."""
    data = bytes(client.outbox) + client.h2.data_to_send()
    client.outbox = bytearray()
    for event in server.receive_data(data):
        assert not isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated), event


def request(client: _Connection, pending: _Pending) -> int:
    stream_id: int = client.h2.get_next_available_stream_id()
    client.pending[stream_id] = pending
    client.h2.send_headers(
        stream_id,
        [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"t"), (b":path", b"/")],
        end_stream=True,
    )
    return stream_id


def feed(client: _Connection, data: bytes, cuts: list[int]) -> None:
    """``data`` as the socket would give it: in pieces cut at ``cuts`` (any points)."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(points):
        client.receive(data[start:end], 1 << 30)


frames = st.lists(
    st.tuples(st.binary(min_size=0, max_size=3000), st.none() | st.integers(0, 40)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    frames=frames,
    cuts=st.lists(st.integers(0, 200_000), max_size=30),
    end=st.booleans(),
    take_every=st.integers(1, 5),
)
def test_streamed_frames_arrive_whole_in_order_and_are_granted_back(
    frames: list[tuple[bytes, int | None]], cuts: list[int], end: bool, take_every: int
) -> None:
    async def main() -> None:
        client = _Connection(trio.testing.MemoryReceiveStream(), "t", "http", WINDOW)  # type: ignore[arg-type]
        client.h2.initiate_connection()
        client.h2.increment_flow_control_window(transport.CONNECTION_WINDOW - 65_535)
        server = server_connection()
        exchange(client, server)
        feed(client, server.data_to_send(), [])
        exchange(client, server)  # the SETTINGS acknowledgement

        # h2 hands the client a streamed frame only for the one that ends the stream.
        through_h2: list[int] = []
        on_streamed_data = client._on_streamed_data

        def counted(pending: _Streaming, event: h2.events.DataReceived) -> None:
            through_h2.append(event.flow_controlled_length or 0)
            on_streamed_data(pending, event)

        client._on_streamed_data = counted  # type: ignore[method-assign]
        streaming = _Streaming()
        plain = _Pending()
        stream_id = request(client, streaming)
        plain_id = request(client, plain)
        exchange(client, server)

        server.send_headers(stream_id, [(b":status", b"200"), (b"content-type", b"x/y")])
        server.send_headers(plain_id, [(b":status", b"200")])
        response = StreamedResponse(client, stream_id, streaming)
        sent: list[bytes] = []
        received: list[bytes] = []
        for i, (payload, pad) in enumerate(frames):
            while server.local_flow_control_window(stream_id) < len(payload) + 256:
                # The window is closed: the client takes what it has, which grants credit.
                feed(client, server.data_to_send(), cuts)
                while (chunk := response.receive_nowait()) is not None and chunk:
                    received.append(chunk)
                exchange(client, server)
            last = end and i == len(frames) - 1
            server.send_data(stream_id, payload, end_stream=last, pad_length=pad)
            server.send_data(plain_id, b"p%d" % i)  # a plain response's body, interleaved
            sent.append(payload)
            if i % take_every == 0:
                feed(client, server.data_to_send(), cuts)
                while (chunk := response.receive_nowait()) is not None and chunk:
                    received.append(chunk)
                exchange(client, server)
        server.end_stream(plain_id)
        feed(client, server.data_to_send(), cuts)
        while (chunk := response.receive_nowait()) is not None and chunk:
            received.append(chunk)
        exchange(client, server)

        assert b"".join(received) == b"".join(sent)
        assert len(through_h2) == (1 if end else 0)
        assert client.splitter.partial == b""
        assert streaming.headers_received and streaming.content_type == "x/y"
        assert streaming.done.is_set() == end
        assert plain.done.is_set() and plain.status == 200
        assert b"".join(plain.chunks) == b"".join(b"p%d" % i for i in range(len(frames)))
        if not end:
            # Everything taken: what the broker may still send on the stream is the
            # window minus at most half a window not yet granted back.
            assert server.local_flow_control_window(stream_id) > WINDOW // 2 - 4 * KIB
        # The connection's window: at most one batch of credit, and the plain
        # response's bytes (h2 grants those at half a window), not given back.
        assert (
            server.outbound_flow_control_window
            > transport.CONNECTION_WINDOW - transport.CONNECTION_CREDIT - 64 * KIB
        )

    trio.run(main)


def test_an_oversized_frame_is_refused_from_its_header() -> None:
    async def main() -> None:
        client = _Connection(trio.testing.MemoryReceiveStream(), "t", "http", WINDOW)  # type: ignore[arg-type]
        client.h2.initiate_connection()
        size = client.h2.max_inbound_frame_size + 1
        with pytest.raises(h2.exceptions.FrameTooLargeError):
            client.receive(size.to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01", 1 << 30)

    trio.run(main)


def test_window_update_frames_are_what_h2_writes() -> None:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.data_to_send()
    client.increment_flow_control_window(123_456)
    assert transport.window_update(0, 123_456) == client.data_to_send()


@settings(max_examples=100, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=70_000),
    max_frame=st.sampled_from([16_384, 16_385, 40_000, 1 << 20]),
    stream_id=st.sampled_from([1, 3, 0x7FFF_FFFF]),
)
def test_data_frames_are_what_h2_writes_for_the_same_slices(
    size: int, max_frame: int, stream_id: int
) -> None:
    """The broker frames its pushes itself (``push_nowait``): the bytes must be h2's."""
    payload = bytes(i % 251 for i in range(size))
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.update_settings(
        {
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: max_frame,
        }
    )
    client.increment_flow_control_window(1 << 20)
    client.send_headers(
        stream_id,
        [(":method", "GET"), (":scheme", "http"), (":authority", "t"), (":path", "/")],
        end_stream=True,
    )
    server = server_connection()
    server.receive_data(client.data_to_send())
    server.data_to_send()
    for at in range(0, max(size, 1), max_frame):
        server.send_data(stream_id, payload[at : at + max_frame])
    assert data_frames(stream_id, payload, max_frame) == server.data_to_send()
