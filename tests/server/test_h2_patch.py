"""The h2 per-frame repr workaround (broker/protocol/h2_patch.py) is in effect."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest
from hyperframe.frame import DataFrame, Frame

import broker.server  # noqa: F401  (importing the server applies the patch)
from broker.protocol import h2_patch

SIZE = 60_000  # within h2's default windows: four DATA frames of up to 16 KiB


def exchange_data_frames() -> int:
    """Send DATA frames client -> server through h2 (sans-IO); the bytes received."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    client.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    stream_id = client.get_next_available_stream_id()
    headers = [(":method", "POST"), (":path", "/"), (":scheme", "http"), (":authority", "x")]
    client.send_headers(stream_id, headers)
    payload = b"\x5a" * SIZE
    for start in range(0, SIZE, 16384):
        chunk = payload[start : start + 16384]
        client.send_data(stream_id, chunk, end_stream=start + 16384 >= SIZE)
    events = server.receive_data(client.data_to_send())
    return sum(len(e.data or b"") for e in events if isinstance(e, h2.events.DataReceived))


def test_patch_is_applied() -> None:
    assert h2_patch.is_applied()
    frame = DataFrame(1)
    frame.data = b"secret payload"
    assert "secret" not in repr(frame)
    assert "DataFrame(stream_id=1" in repr(frame)


def test_receiving_data_frames_does_not_build_their_payload_repr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    original_body_repr = Frame._body_repr

    def spy(self: Frame) -> str:
        calls.append(type(self).__name__)
        return original_body_repr(self)

    monkeypatch.setattr(Frame, "_body_repr", spy)
    assert exchange_data_frames() == SIZE
    assert calls == []

    # Control: without the patch h2 does build the payload repr, so the spy can see it.
    monkeypatch.setattr(Frame, "__repr__", h2_patch.ORIGINAL_FRAME_REPR)
    assert exchange_data_frames() == SIZE
    assert "DataFrame" in calls
