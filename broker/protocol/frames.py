"""HTTP/2 frames around h2: a streamed response's DATA frames, framed and read without its objects.

A subscriber gets one DATA frame per pushed event, and h2's per-frame parsing
and stream state machine were a large share of its CPU
(docs/performance-notes.md). The clients (``broker.client.transport`` for
trio, ``broker.client.sync_streaming`` for blocking code) therefore cut the
bytes they read into whole frames themselves (``FrameSplitter``): the DATA
frames of the streams they stream are handled directly, with their credit
granted back in raw WINDOW_UPDATE frames (``window_update``), and every other
frame goes to h2, in the order received. h2 never sees the taken frames, so it
never counts them in its windows either.

The broker frames the events it pushes the same way (``data_frames``, used by
``H2ServerConnection.push_nowait``), while h2 still checks and counts them.

Sans-IO: nothing here reads or writes a socket.
"""

from __future__ import annotations

from collections.abc import Callable

import h2.exceptions

#: HTTP/2 frame types and flags read here (RFC 9113 section 6).
DATA_FRAME = 0x0
END_STREAM = 0x1
PADDED = 0x8
FRAME_HEADER = 9


def window_update(stream_id: int, increment: int) -> bytes:
    """A WINDOW_UPDATE frame (RFC 9113 section 6.9)."""
    return b"\x00\x00\x04\x08\x00" + stream_id.to_bytes(4, "big") + increment.to_bytes(4, "big")


def data_frames(stream_id: int, payload: bytes, max_frame: int) -> bytes:
    """``payload`` as DATA frames of at most ``max_frame`` bytes, none ending the stream.

    The bytes h2's ``send_data`` would write for the same slices (no padding).
    """
    prefix = b"\x00\x00" + stream_id.to_bytes(4, "big")
    size = len(payload)
    if size <= max_frame:
        return size.to_bytes(3, "big") + prefix + payload
    view = memoryview(payload)
    parts: list[bytes | memoryview] = []
    for at in range(0, size, max_frame):
        piece = view[at : at + max_frame]
        parts += (len(piece).to_bytes(3, "big"), prefix, piece)
    return b"".join(parts)


def data_payload(frames: bytes, start: int, end: int) -> bytes | None:
    """The payload of the DATA frame ``frames[start:end]``, its padding removed.

    None for a padding length that does not fit: the frame is then h2's to
    refuse (a protocol error).
    """
    at = start + FRAME_HEADER
    if frames[start + 4] & PADDED:
        if at == end or frames[at] >= end - at:
            return None
        return frames[at + 1 : end - frames[at]]
    return frames[at:end]


class FrameSplitter:
    """Whole frames out of the bytes read from a connection, streamed DATA frames set apart.

    ``feed`` keeps the start of an incomplete frame for the next read. A frame
    larger than ``limit`` (SETTINGS_MAX_FRAME_SIZE) is refused
    (``FrameTooLargeError``, an h2 ``ProtocolError``) as soon as its header is
    here.
    """

    __slots__ = ("limit", "partial")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: The start of a frame whose end has not arrived yet.
        self.partial = b""

    def feed(
        self, data: bytes, streamed: Callable[[int], bool]
    ) -> tuple[bytes, list[tuple[int, int, int]]]:
        """The whole frames received so far, as ``(frames, segments)``.

        Each segment ``(stream_id, start, end)`` is a slice of ``frames``, in
        the order received: a DATA frame (header included) that does not end
        its stream, of a stream for which ``streamed(stream_id)`` is true, or
        (stream 0) a run of other frames for h2. The caller handles them in
        order and may still hand a DATA segment to h2 (its headers may be in
        the run before it).
        """
        if self.partial:
            data, self.partial = self.partial + data, b""
        size = len(data)
        segments: list[tuple[int, int, int]] = []
        pos = run = 0  # data[run:pos] is for h2, not in a segment yet
        limit = self.limit
        while pos + FRAME_HEADER <= size:
            length = int.from_bytes(data[pos : pos + 3], "big")
            end = pos + FRAME_HEADER + length
            if length > limit:
                raise h2.exceptions.FrameTooLargeError(
                    f"a frame of {length} bytes, over the {limit} allowed"
                )
            if end > size:
                break
            if data[pos + 3] == DATA_FRAME and not data[pos + 4] & END_STREAM:
                stream_id = int.from_bytes(data[pos + 5 : pos + 9], "big") & 0x7FFF_FFFF
                if streamed(stream_id):
                    if run < pos:
                        segments.append((0, run, pos))
                    segments.append((stream_id, pos, end))
                    run = end
            pos = end
        if run < pos:
            segments.append((0, run, pos))
        if pos < size:
            self.partial = data[pos:]
        return data, segments
