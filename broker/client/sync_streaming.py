"""SubscribeToShard for code without an event loop: one subscription on a blocking socket.

``SyncClient.subscribe_to_shard(arn, shard, {"Type": "LATEST"})`` (or
``subscribe_to_shard(endpoint, ...)`` here) is a context manager whose value
is a ``SyncShardEvents``, an iterator of the same typed events as the async
``ShardEvents`` (``RecordsEvent``, ``HeartbeatEvent``, ``EndEvent``,
``ErrorEvent``), or of their wire bytes with ``wire()``::

    with client.subscribe_to_shard(arn, shard, {"Type": "TRIM_HORIZON"}) as events:
        for event in events:
            ...

It is its own implementation, not the async client behind a thread: a
subscriber is woken at every commit, and on this project's machines a pass
through an event loop's scheduler at each wake-up cost more CPU than
everything else a subscriber does (docs/performance-notes.md). Here the
calling thread reads the socket itself, as redis-py's blocking ``XREAD``
does: the request goes out with h2, the events' DATA frames are cut out of
the bytes read (``broker.protocol.frames``) and every other frame goes to h2.

The contract is the async one's (``broker.client.streaming``):

* Entering sends the request on a connection of its own and waits at most
  ``timeout`` for the answer's headers; an error answered before streaming
  is raised there as its named error (``ResourceInUseException``, ...).
* Flow control reaches the application: the stream's window
  (``stream_buffer_bytes``) is given back only for chunks the iteration
  took, once half a window was taken, so a caller that stops iterating stops
  the broker's sender for this subscription and nothing else.
* The events end when the body does (after an *end* or *error* event, or at
  the subscription's lifetime: subscribe again ``AFTER_SEQUENCE_NUMBER`` the
  last continuation). A lost connection raises ``ConnectionLostError``; no
  bytes within ``read_timeout`` (None: wait as long as it takes; the broker
  sends a heartbeat every second without records) raise
  ``RequestTimeoutError``. Leaving the block before the body ended resets
  the stream and closes the connection.

One subscription is used by one thread at a time.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import h2.connection
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes

from ..errors import ShardlineError
from ..fanout.events import DEFAULT_MAX_EVENT_BYTES, Event
from ..protocol.codec import CONTENT_TYPE, encode_body
from ..protocol.frames import FRAME_HEADER, FrameSplitter, data_payload, window_update
from .client import raise_for_response
from .streaming import MAX_ERROR_BODY, DecodedEvents, WireSplitter
from .transport import (
    CONNECTION_CREDIT,
    CONNECTION_WINDOW,
    DEFAULT_WINDOW,
    MAX_FRAME_SIZE,
    MAX_WINDOW,
    READ_SIZE,
    STREAM_BUFFER,
    ConnectionLostError,
    RequestTimeoutError,
    receiving_connection,
)

__all__ = ["SyncShardEvents", "subscribe_to_shard"]

PATH = "/v1/SubscribeToShard"


class _BlockingStream:
    """One streamed response on a blocking connection of its own: its body's chunks, in order."""

    def __init__(self, sock: socket.socket, authority: str, scheme: str, window: int) -> None:
        self.sock = sock
        self.authority = authority.encode()
        self.scheme = scheme.encode()
        self.window = window
        self.h2 = receiving_connection(window)
        self.splitter = FrameSplitter(MAX_FRAME_SIZE)
        self.stream_id = 0
        self.status = 0
        self.headers_received = False
        #: The body's chunks received and not yet taken, with their flow-controlled lengths.
        self.queue: deque[tuple[bytes, int]] = deque()
        self.ended = False
        self.error: ShardlineError | None = None
        #: Streamed bytes received whose connection window is not yet given back.
        self.connection_credit = 0
        #: Taken by the application and not yet granted back to the broker.
        self.taken = 0
        #: Frames to write with the next ``_flush`` (credit granted around h2).
        self.outbox = bytearray()

    def send_request(self, path: str, body: bytes, content_type: str) -> None:
        """The connection's preface and settings, then the request, in one write."""
        h2c = self.h2
        h2c.initiate_connection()
        h2c.increment_flow_control_window(CONNECTION_WINDOW - DEFAULT_WINDOW)
        self.stream_id = h2c.get_next_available_stream_id()
        h2c.send_headers(
            self.stream_id,
            [
                (b":method", b"POST"),
                (b":scheme", self.scheme),
                (b":authority", self.authority),
                (b":path", path.encode()),
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        )
        # A request body fits the default windows (65,535 bytes) the broker starts with.
        if len(body) > min(DEFAULT_WINDOW, h2c.max_outbound_frame_size):
            raise ValueError(f"a request body of {len(body)} bytes is too large here")
        h2c.send_data(self.stream_id, body, end_stream=True)
        self._flush()

    def wait_for_headers(self, deadline: float) -> None:
        while not self.headers_received and not self.ended:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            self._read()
        if not self.headers_received and self.error is not None:
            raise self.error

    def receive_some(self) -> bytes:
        """The body's next chunk; ``b""`` once it ended (its error raised, if it failed)."""
        queue = self.queue
        while True:
            while queue:
                data, length = queue.popleft()
                if length:
                    self._take(length)
                if data:
                    return data
            if self.ended:
                if self.error is not None:
                    raise self.error
                return b""
            try:
                self._read()
            except TimeoutError:
                if not self.headers_received:
                    raise  # the wait for the answer: ``subscribe_to_shard`` names it
                raise RequestTimeoutError(
                    f"no bytes from the broker within {self.sock.gettimeout()} s"
                ) from None

    def _take(self, length: int) -> None:
        """Grant the stream's window back once half of it was taken (as h2 does)."""
        self.taken += length
        if self.taken >= self.window // 2 and not self.ended:
            self.outbox += window_update(self.stream_id, self.taken)
            self.taken = 0
            self._flush()

    def _read(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except TimeoutError:
            raise
        except OSError as exc:
            self._fail(f"the connection failed: {exc}")
            return
        if not data:
            self._fail("the broker closed the connection")
            return
        try:
            frames, segments = self.splitter.feed(data, self._streamed)
            for stream_id, start, end in segments:
                if stream_id and self.headers_received and not self.ended:
                    payload = data_payload(frames, start, end)
                    if payload is not None:
                        self._take_data(payload, end - start - FRAME_HEADER)
                        continue
                for event in self.h2.receive_data(frames[start:end]):
                    self._on_event(event)
        except h2.exceptions.ProtocolError as exc:
            self._fail(f"HTTP/2 protocol error: {exc}")
            return
        self._flush()

    def _streamed(self, stream_id: int) -> bool:
        return stream_id == self.stream_id

    def _take_data(self, payload: bytes, length: int) -> None:
        if length:
            self.connection_credit += length
            if self.connection_credit >= CONNECTION_CREDIT:
                self.outbox += window_update(0, self.connection_credit)
                self.connection_credit = 0
            self.queue.append((payload, length))

    def _on_event(self, event: h2.events.Event) -> None:
        ours = getattr(event, "stream_id", None) == self.stream_id
        if isinstance(event, h2.events.ResponseReceived) and ours:
            for name, value in event.headers or ():
                if name == b":status":
                    self.status = int(value)
            self.headers_received = True
        elif isinstance(event, h2.events.DataReceived):
            # The stream's last frame, or a frame h2 had to see: h2 counted it in the
            # connection's window, which is given back now; the stream's ends with it.
            length = event.flow_controlled_length or 0
            if length:
                self.h2.increment_flow_control_window(length)
            if ours and (event.data or length):
                self.queue.append((event.data or b"", 0))
        elif isinstance(event, h2.events.StreamEnded) and ours:
            self.ended = True
        elif isinstance(event, h2.events.StreamReset) and ours:
            self._fail(f"the broker reset the stream ({event.error_code!r})")
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._fail(f"the broker closed the connection (GOAWAY {event.error_code!r})")

    def _fail(self, reason: str) -> None:
        if not self.ended:
            self.ended = True
            self.error = ConnectionLostError(reason)

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if self.outbox:
            data, self.outbox = bytes(self.outbox) + data, bytearray()
        if data:
            try:
                self.sock.sendall(data)
            except OSError as exc:
                self._fail(f"the connection failed: {exc}")

    def close(self) -> None:
        """Reset the stream (CANCEL) if the body has not ended, and close the connection."""
        try:
            if not self.ended:
                self.ended = True
                self.h2.reset_stream(self.stream_id, ErrorCodes.CANCEL)
            self.h2.close_connection()
            self.sock.settimeout(0)
            self.sock.send(self.h2.data_to_send())
        except (OSError, h2.exceptions.ProtocolError):
            pass
        finally:
            self.sock.close()


class SyncShardEvents:
    """The events of one subscription, in order: ``for event in events``.

    Iteration ends when the body ends; a body cut inside an event, or one
    that breaks the schema, raises ``SerializationError``.
    """

    def __init__(self, stream: _BlockingStream, max_event_bytes: int) -> None:
        self._stream = stream
        self._events = DecodedEvents(max_event_bytes)

    def __iter__(self) -> SyncShardEvents:
        return self

    def __next__(self) -> Event:
        events = self._events
        while not events.ready:
            if events.ended:
                raise StopIteration
            events.feed(self._stream.receive_some())
        return events.ready.popleft()

    def wire(self) -> Iterator[bytes]:
        """The events as they are on the wire, one msgpack map each, not decoded.

        As ``ShardEvents.wire``: for consumers that handle records in bulk
        (numpy over the stored ``[arrival_ms, key, data]`` arrays), with no
        schema check. Use either this or plain iteration, not both.
        """
        splitter = WireSplitter(self._events.max_event_bytes)
        receive = self._stream.receive_some
        while chunk := receive():
            yield from splitter.feed(chunk)
        splitter.close()


def _connect(
    endpoint: str, timeout: float, ssl_context: ssl.SSLContext | None
) -> tuple[socket.socket, str, str]:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint must be http://host:port or https://host:port: {endpoint}")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise ConnectionLostError(f"cannot connect to {host}:{port}: {exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if parts.scheme == "https":
        if ssl_context is None:
            ssl_context = ssl.create_default_context()
            ssl_context.set_alpn_protocols(["h2"])
        try:
            sock = ssl_context.wrap_socket(sock, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise ConnectionLostError(f"TLS with {host}:{port} failed: {exc}") from exc
    return sock, parts.netloc, parts.scheme


@contextmanager
def subscribe_to_shard(
    endpoint: str,
    consumer_arn: str,
    shard_id: str,
    starting_position: dict[str, Any],
    *,
    timeout: float = 30.0,
    read_timeout: float | None = None,
    ssl_context: ssl.SSLContext | None = None,
    stream_buffer_bytes: int = STREAM_BUFFER,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> Iterator[SyncShardEvents]:
    """``with subscribe_to_shard(endpoint, arn, shard, {"Type": ...}) as events:``.

    One push subscription on a blocking connection of its own (module docstring).
    """
    if not DEFAULT_WINDOW <= stream_buffer_bytes <= MAX_WINDOW:
        raise ValueError(
            f"stream_buffer_bytes must be {DEFAULT_WINDOW} to {MAX_WINDOW}: {stream_buffer_bytes}"
        )
    body = encode_body(
        {"ConsumerARN": consumer_arn, "ShardId": shard_id, "StartingPosition": starting_position}
    )
    deadline = time.monotonic() + timeout
    sock, authority, scheme = _connect(endpoint, timeout, ssl_context)
    stream = _BlockingStream(sock, authority, scheme, stream_buffer_bytes)
    try:
        try:
            stream.send_request(PATH, body, CONTENT_TYPE)
            stream.wait_for_headers(deadline)
            if stream.status != 200:
                error_body = bytearray()
                while len(error_body) < MAX_ERROR_BODY and (chunk := stream.receive_some()):
                    error_body += chunk
                raise_for_response(stream.status, bytes(error_body))
                raise AssertionError("an error answer decoded as a success")  # pragma: no cover
        except TimeoutError:
            raise RequestTimeoutError(
                f"SubscribeToShard got no answer within {timeout} s"
            ) from None
        sock.settimeout(read_timeout)
        yield SyncShardEvents(stream, max_event_bytes)
    finally:
        stream.close()
