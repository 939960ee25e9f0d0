"""The client's HTTP/2 connection: concurrent requests over one socket.

``H2Transport`` owns one connection at a time. Its reader task runs in the
nursery the ``Client`` gives it; requests are sent from the callers' tasks.
Writes go through one lock and take all of h2's pending output at once
(coalesced). Outbound bodies obey the stream and connection windows (a caller
parks on its stream's event until ``WindowUpdated``); response bodies are
buffered per stream up to ``max_response_bytes`` and acknowledged as they are
buffered. When the connection is lost every pending request fails with
``ConnectionLostError`` (retriable) and the next request reconnects.

**Streamed responses** (``H2Transport.stream``: SubscribeToShard's push
events) are read as they arrive, and flow control reaches from the broker's
sending task to the application. They travel on a second connection of their
own, opened on first use, whose ``SETTINGS_INITIAL_WINDOW_SIZE`` is the
per-stream buffer bound (``stream_buffer_bytes``, default 1 MiB): the broker
may send a stream at most that much beyond what the application took. A
received chunk waits in its stream's queue and is acknowledged (a
``WINDOW_UPDATE`` of the stream, once half a window was taken) only when the
application takes it, so a reader that stops reading closes its stream's
window and the broker's sender for it parks, while every other stream goes
on. The *connection's* window is given back as soon as data arrives (in
batches of ``CONNECTION_CREDIT``): otherwise a few stalled readers would hold
the whole connection window and stop the others. The separate connection keeps
the request path as it was (its streams keep their 16 MiB windows) and keeps
pushed data from queueing in front of request/response traffic on one socket.

A streamed response's DATA frames are taken off the socket's bytes before h2
sees them (``_Connection.receive``), and their WINDOW_UPDATEs are written
here: a subscriber gets a frame per pushed event, and h2's per-frame state
machine was a large share of a subscriber's CPU (docs/performance-notes.md).
Every other frame (settings, headers, resets, the frame that ends a stream,
anything of a plain request) still goes to h2, in the order received; h2
never sees the taken frames, so it never counts them in its windows either,
and the credit for them is granted with raw frames.
"""

from __future__ import annotations

import ssl
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import trio
from h2.errors import ErrorCodes

from ..errors import ShardlineError
from ..protocol import h2_patch
from ..protocol.frames import FRAME_HEADER, FrameSplitter, data_payload, window_update
from ..protocol.receiving import SocketReader
from ..protocol.sending import write_now

h2_patch.apply()

MIB = 1 << 20
STREAM_WINDOW = 16 * MIB
CONNECTION_WINDOW = 64 * MIB
MAX_FRAME_SIZE = 1 * MIB
READ_SIZE = 256 * 1024
#: How long a new connection waits for the broker's SETTINGS frame.
SETTINGS_TIMEOUT_S = 10.0
#: A streamed response's default buffer bound: its stream's flow-control window.
STREAM_BUFFER = 1 * MIB
#: The HTTP/2 bounds of a stream window (RFC 9113 section 6.9.2).
DEFAULT_WINDOW = 65_535
MAX_WINDOW = (1 << 31) - 1
#: The connection-level window of streamed data is given back in batches of this.
CONNECTION_CREDIT = 1 * MIB


class ConnectionLostError(ShardlineError):
    """The connection to the broker closed or failed while a call was in flight."""

    wire_name = "ConnectionLostException"
    http_status = 0
    retriable = True


class RequestTimeoutError(ShardlineError):
    wire_name = "RequestTimeoutException"
    http_status = 0
    retriable = True


@dataclass
class _Pending:
    done: trio.Event = field(default_factory=trio.Event)
    window_open: trio.Event = field(default_factory=trio.Event)
    status: int = 0
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    error: ShardlineError | None = None


@dataclass(eq=False)
class _Streaming(_Pending):
    """A streamed response: chunks received and not yet taken, with their flow-controlled lengths.

    ``readable`` is set by the read loop whenever the reader may have
    something new to look at (headers, data, the end, an error); the reader
    replaces it with a fresh event before it waits.
    """

    readable: trio.Event = field(default_factory=trio.Event)
    headers_received: bool = False
    content_type: str = ""
    queue: deque[tuple[bytes, int]] = field(default_factory=deque)
    buffered: int = 0
    #: Taken by the application and not yet granted back to the broker (WINDOW_UPDATE).
    taken: int = 0


def client_connection() -> h2.connection.H2Connection:
    """An h2 client connection whose caller builds valid, lower-case request headers.

    h2 checking and normalising them again was ~15 % of a request's CPU.
    """
    return h2.connection.H2Connection(
        h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
    )


def receiving_connection(stream_window: int) -> h2.connection.H2Connection:
    """A client connection whose streams may each be sent ``stream_window`` bytes ahead.

    Frames up to ``MAX_FRAME_SIZE`` are accepted; the broker may not push.
    """
    connection = client_connection()
    connection.local_settings = h2.settings.Settings(
        client=True,
        initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: stream_window,
        },
    )
    connection.max_inbound_frame_size = MAX_FRAME_SIZE
    return connection


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    body: bytes


class _Connection:
    def __init__(
        self,
        stream: trio.abc.Stream,
        authority: str,
        scheme: str,
        stream_window: int = STREAM_WINDOW,
    ) -> None:
        self.stream = stream
        #: The plain socket, for writes without a trio checkpoint (``flush``); None for TLS.
        self.sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        self.authority = authority.encode()
        self.scheme = scheme.encode()
        self.h2 = receiving_connection(stream_window)
        self.stream_window = stream_window
        #: Streamed data received whose connection-level window is not yet given back.
        self.connection_credit = 0
        self.send_lock = trio.Lock()
        self.pending: dict[int, _Pending] = {}
        self.slot_free = trio.Event()
        #: Set once the broker's SETTINGS arrived (or the connection failed).
        self.settings_received = trio.Event()
        #: Set when the read loop left output (acknowledgements) for ``write_loop``.
        self.output_ready = trio.Event()
        #: Bytes h2 produced while the read loop ran, in order, for ``write_loop``.
        self.outbox = bytearray()
        self.alive = True
        #: Set once the connection is lost or closed.
        self.closed = trio.Event()
        #: Cuts what is read into frames, streamed DATA apart (``receive``).
        self.splitter = FrameSplitter(MAX_FRAME_SIZE)

    async def start(self) -> None:
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65_535)
        await self.flush()

    async def flush(self) -> None:
        """Send h2's output (after what the read loop left in ``outbox``), in order.

        On a plain socket with no send in progress, the bytes are written at
        once: ``send_all`` would first pass through trio's scheduler, so a
        request would wait behind every task that is ready to run (about 1 ms
        at the ingest peak). What the socket does not take goes the usual way,
        which waits for room: the caller still waits while the peer does not read.
        """
        if self.sock is not None and not self.send_lock.locked():
            data = self.h2.data_to_send()
            if self.outbox:
                data, self.outbox = bytes(self.outbox + data), bytearray()
            if not data:
                return
            sent = write_now(self.sock, data)
            if sent == len(data):
                return
            self.outbox[:0] = memoryview(data)[sent:]
        async with self.send_lock:
            data = self.h2.data_to_send()
            if self.outbox:
                data, self.outbox = bytes(self.outbox + data), bytearray()
            if data:
                await self.stream.send_all(data)

    async def write_loop(self) -> None:
        """Send what the read loop queued, so that reading never waits on writing.

        With both peers' read loops blocked in a write while each socket's
        buffers are full, neither would read again (a write-write deadlock).
        """
        try:
            while self.alive:
                await self.output_ready.wait()
                self.output_ready = trio.Event()
                await self.flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.fail_all(f"the connection failed: {exc or type(exc).__name__}")

    def fail_all(self, reason: str) -> None:
        self.alive = False
        self.closed.set()
        self.output_ready.set()
        self.settings_received.set()
        for pending in self.pending.values():
            if pending.error is None and not pending.done.is_set():
                pending.error = ConnectionLostError(reason)
            pending.done.set()
            pending.window_open.set()
            if isinstance(pending, _Streaming):
                pending.readable.set()
        self.slot_free.set()

    async def read_loop(self, max_response_bytes: int) -> None:
        reader = SocketReader(self.stream, READ_SIZE)
        try:
            while True:
                data = await reader.receive()
                if not data:
                    self.fail_all("the broker closed the connection")
                    return
                self.receive(data, max_response_bytes)
                # Most reads (a pushed event's DATA) leave nothing to send: the write
                # loop is woken only when h2 has output (acknowledgements, credit).
                output = self.h2.data_to_send()
                if output:
                    self.outbox += output
                    self.output_ready.set()
                if not self.alive:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.fail_all(f"the connection failed: {exc or type(exc).__name__}")
        except h2.exceptions.ProtocolError as exc:
            self.fail_all(f"HTTP/2 protocol error: {exc}")
        finally:
            self.alive = False
            self.fail_all("the connection closed")
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    def receive(self, data: bytes, max_response_bytes: int) -> None:
        """Handle bytes read from the socket: streamed DATA frames here, every other frame in h2.

        Frames are handled whole and in order (``FrameSplitter``); a DATA
        frame of a streamed response is taken directly once its headers were
        handled, else it goes to h2 with the rest.
        """
        frames, segments = self.splitter.feed(data, self._streamed)
        pending_streams = self.pending
        for stream_id, start, end in segments:
            if stream_id:
                pending = pending_streams.get(stream_id)
                if (
                    type(pending) is _Streaming
                    and self.alive
                    and pending.headers_received
                    and not pending.done.is_set()
                ):
                    payload = data_payload(frames, start, end)
                    if payload is not None:
                        self._take_data(pending, payload, end - start - FRAME_HEADER)
                        continue
            for event in self.h2.receive_data(frames[start:end]):
                self._on_event(event, max_response_bytes)

    def _streamed(self, stream_id: int) -> bool:
        pending = self.pending.get(stream_id)
        return type(pending) is _Streaming and not pending.done.is_set()

    def _take_data(self, pending: _Streaming, payload: bytes, length: int) -> None:
        """Queue a streamed DATA frame's payload and count its connection credit."""
        if length:
            self.connection_credit += length
            if self.connection_credit >= CONNECTION_CREDIT:
                self.outbox += window_update(0, self.connection_credit)
                self.connection_credit = 0
                self.output_ready.set()
            pending.queue.append((payload, length))
            pending.buffered += len(payload)
            pending.readable.set()

    def _on_event(self, event: h2.events.Event, max_response_bytes: int) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            pending = self.pending.get(event.stream_id)
            if pending is not None:
                for name, value in event.headers or ():
                    if name == b":status":
                        pending.status = int(value)
                if isinstance(pending, _Streaming):
                    pending.headers_received = True
                    for name, value in event.headers or ():
                        if name == b"content-type":
                            pending.content_type = bytes(value).decode("latin-1")
                    pending.readable.set()
        elif isinstance(event, h2.events.DataReceived):
            streaming = self.pending.get(event.stream_id)
            if isinstance(streaming, _Streaming):
                self._on_streamed_data(streaming, event)
                return
            length = event.flow_controlled_length or 0
            if length:
                self.h2.acknowledge_received_data(length, event.stream_id)
            pending = self.pending.get(event.stream_id)
            if pending is None or pending.done.is_set():
                return
            data = event.data or b""
            pending.size += len(data)
            if pending.size > max_response_bytes:
                pending.error = ShardlineError(
                    f"the response exceeds the client's limit of {max_response_bytes} bytes"
                )
                pending.chunks = []
                pending.done.set()
                self.h2.reset_stream(event.stream_id, ErrorCodes.CANCEL)
            else:
                pending.chunks.append(data)
        elif isinstance(event, h2.events.StreamEnded):
            self._finish(event.stream_id, None)
        elif isinstance(event, h2.events.StreamReset):
            self._finish(
                event.stream_id,
                ConnectionLostError(f"the broker reset the stream ({event.error_code!r})"),
            )
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id and event.stream_id in self.pending:
                self.pending[event.stream_id].window_open.set()
            elif not event.stream_id:
                for pending in self.pending.values():
                    pending.window_open.set()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            for pending in self.pending.values():
                pending.window_open.set()
            self.slot_free.set()
            self.settings_received.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.fail_all(f"the broker closed the connection (GOAWAY {event.error_code!r})")

    def _finish(self, stream_id: int, error: ShardlineError | None) -> None:
        pending = self.pending.get(stream_id)
        if pending is not None and not pending.done.is_set():
            pending.error = error
            pending.done.set()
            pending.window_open.set()
            if isinstance(pending, _Streaming):
                pending.readable.set()

    def _on_streamed_data(self, pending: _Streaming, event: h2.events.DataReceived) -> None:
        """Queue a streamed chunk that h2 handled (the stream's last, or one before its headers).

        h2 counted it in its connection window, so h2 gives that back now; the
        stream's own window needs nothing, as its stream ends or fails.
        """
        length = event.flow_controlled_length or 0
        if length:
            self.h2.increment_flow_control_window(length)
        data = event.data or b""
        if data or length:
            pending.queue.append((data, length))
            pending.buffered += len(data)
            pending.readable.set()

    def take(self, stream_id: int, pending: _Streaming, length: int) -> None:
        """The application took ``length`` flow-controlled bytes: grant them back when due.

        Like h2's own acknowledgement, credit goes back once half a window was
        taken, so a fast reader costs one WINDOW_UPDATE per half window.
        """
        pending.taken += length
        if pending.taken < self.stream_window // 2 or pending.done.is_set() or not self.alive:
            return
        state = self.h2.streams.get(stream_id)
        if state is None or state.closed:
            return
        # Its DATA went around h2 (``receive``), so the grant goes around it too.
        self.outbox += window_update(stream_id, pending.taken)
        pending.taken = 0
        self.output_ready.set()

    async def _wait_for_slot(self) -> None:
        """Wait until the broker's SETTINGS_MAX_CONCURRENT_STREAMS allows one more stream."""
        while self.alive and (
            self.h2.open_outbound_streams >= self.h2.remote_settings.max_concurrent_streams
        ):
            # Every waiter waits on the same event; a new one only once it was set
            # (replacing an unset one would strand the tasks already waiting on it).
            if self.slot_free.is_set():
                self.slot_free = trio.Event()
            await self.slot_free.wait()
        if not self.alive:
            raise ConnectionLostError("the connection to the broker is closed")

    async def _send_request(
        self,
        stream_id: int,
        pending: _Pending,
        path: str,
        body: bytes,
        content_type: str,
        method: str,
    ) -> None:
        headers = [
            (b":method", method.encode()),
            (b":scheme", self.scheme),
            (b":authority", self.authority),
            (b":path", path.encode()),
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        self.h2.send_headers(stream_id, headers, end_stream=not body)
        await self._send_body(stream_id, pending, body)

    async def request(
        self, path: str, body: bytes, content_type: str, method: str = "POST"
    ) -> RawResponse:
        await self._wait_for_slot()
        stream_id = self.h2.get_next_available_stream_id()
        pending = _Pending()
        self.pending[stream_id] = pending
        try:
            await self._send_request(stream_id, pending, path, body, content_type, method)
            await pending.done.wait()
        except BaseException:
            if self.alive and not pending.done.is_set():
                state = self.h2.streams.get(stream_id)
                if state is not None and not state.closed:
                    self.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
            raise
        finally:
            del self.pending[stream_id]
            self.slot_free.set()
        if pending.error is not None:
            raise pending.error
        return RawResponse(pending.status, b"".join(pending.chunks))

    async def open_stream(
        self, path: str, body: bytes, content_type: str, method: str = "POST"
    ) -> tuple[int, _Streaming]:
        """Send a request and wait for its response's headers; the body is read later.

        The caller owns the stream from here and must ``close_stream`` it.
        """
        await self._wait_for_slot()
        stream_id = self.h2.get_next_available_stream_id()
        pending = _Streaming()
        self.pending[stream_id] = pending
        try:
            await self._send_request(stream_id, pending, path, body, content_type, method)
            while not pending.headers_received and not pending.done.is_set():
                pending.readable = trio.Event()
                await pending.readable.wait()
            if not pending.headers_received and pending.error is not None:
                raise pending.error
        except BaseException:
            self.close_stream(stream_id, pending)
            raise
        return stream_id, pending

    def close_stream(self, stream_id: int, pending: _Streaming) -> None:
        """Forget a streamed response; reset its stream (CANCEL) if the broker is still sending."""
        if self.pending.get(stream_id) is pending:
            del self.pending[stream_id]
            self.slot_free.set()
        if self.alive and not pending.done.is_set():
            pending.done.set()
            state = self.h2.streams.get(stream_id)
            if state is not None and not state.closed:
                try:
                    self.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
                except h2.exceptions.ProtocolError:
                    return
                self.output_ready.set()  # the write loop sends the RST_STREAM

    async def _send_body(self, stream_id: int, pending: _Pending, body: bytes) -> None:
        view = memoryview(body)
        sent = 0
        while sent < len(body):
            if pending.done.is_set() or not self.alive:
                return
            window = self.h2.local_flow_control_window(stream_id)
            if window <= 0:
                # A fresh event *before* the flush: a wake-up (window update, early
                # answer, reset) that arrives during the flush must not be lost.
                pending.window_open = trio.Event()
                await self.flush()
                if pending.done.is_set() or not self.alive:
                    return
                if self.h2.local_flow_control_window(stream_id) <= 0:
                    await pending.window_open.wait()
                continue
            end = min(len(body), sent + window)
            while sent < end:
                size = min(self.h2.max_outbound_frame_size, end - sent)
                self.h2.send_data(
                    stream_id, view[sent : sent + size], end_stream=sent + size == len(body)
                )
                sent += size
        await self.flush()


class StreamedResponse:
    """A response whose body arrives over time (``H2Transport.stream``).

    ``status`` and ``content_type`` are known on entry; the body comes as
    ``await response.receive_some()`` (``b""`` once it ended) or ``async for
    chunk in response``. Taking a chunk is what lets the broker send more:
    at most the stream's buffer bound waits here unread. Once the connection
    is lost, the chunks that arrived before are still given, then
    ``ConnectionLostError`` (retriable) is raised; a stream the broker reset
    raises it too.
    """

    def __init__(self, connection: _Connection, stream_id: int, pending: _Streaming) -> None:
        self._connection = connection
        self._stream_id = stream_id
        self._pending = pending
        self._closed = False

    @property
    def status(self) -> int:
        return self._pending.status

    @property
    def content_type(self) -> str:
        return self._pending.content_type

    def statistics(self) -> dict[str, int]:
        """Bytes and chunks received and not yet taken (at most the buffer bound)."""
        pending = self._pending
        return {"buffered_bytes": pending.buffered, "buffered_chunks": len(pending.queue)}

    async def receive_some(self) -> bytes:
        """The body's next chunk, as received; ``b""`` once the body ended.

        Cancelled, it takes nothing: the chunk stays for the next call.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            chunk = self.receive_nowait()
            if chunk is not None:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return chunk
            self._pending.readable = trio.Event()
            await self._pending.readable.wait()

    def receive_nowait(self) -> bytes | None:
        """The next chunk if one is here (``b""`` at the end), else ``None``."""
        if self._closed:
            raise trio.ClosedResourceError("the streamed response was closed")
        pending = self._pending
        queue = pending.queue
        while queue:
            data, length = queue.popleft()
            pending.buffered -= len(data)
            if length:
                self._connection.take(self._stream_id, pending, length)
            if data:
                return data
        if pending.done.is_set():
            if pending.error is not None:
                raise pending.error
            return b""
        return None

    def __aiter__(self) -> StreamedResponse:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.receive_some()
        if not chunk:
            raise StopAsyncIteration
        return chunk

    def close(self) -> None:
        """Stop reading: reset the stream (CANCEL) if the body has not ended."""
        if not self._closed:
            self._closed = True
            self._connection.close_stream(self._stream_id, self._pending)


class H2Transport:
    """One HTTP/2 connection to ``endpoint``, reopened on the next call after a loss."""

    def __init__(
        self,
        endpoint: str,
        nursery: trio.Nursery,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_response_bytes: int = 64 * MIB,
        stream_buffer_bytes: int = STREAM_BUFFER,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint must be http://host:port or https://host:port: {endpoint}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.authority = parts.netloc
        self.nursery = nursery
        self.max_response_bytes = max_response_bytes
        if parts.scheme == "https" and ssl_context is None:
            ssl_context = ssl.create_default_context()
            ssl_context.set_alpn_protocols(["h2"])
        self.ssl_context = ssl_context if parts.scheme == "https" else None
        if not DEFAULT_WINDOW <= stream_buffer_bytes <= MAX_WINDOW:
            raise ValueError(
                f"stream_buffer_bytes must be {DEFAULT_WINDOW} to {MAX_WINDOW}: "
                f"{stream_buffer_bytes}"
            )
        self.stream_buffer_bytes = stream_buffer_bytes
        self._connection: _Connection | None = None
        #: The connection of streamed responses (``stream``), opened on first use.
        self._streaming: _Connection | None = None
        self._connect_lock = trio.Lock()

    async def _connected(self) -> _Connection:
        async with self._connect_lock:
            connection = self._connection
            if connection is not None and connection.alive:
                return connection
            connection = self._connection = await self._open(STREAM_WINDOW)
            return connection

    async def _streaming_connected(self) -> _Connection:
        async with self._connect_lock:
            connection = self._streaming
            if connection is not None and connection.alive:
                return connection
            connection = self._streaming = await self._open(self.stream_buffer_bytes)
            return connection

    async def _open(self, stream_window: int) -> _Connection:
        try:
            stream: trio.abc.Stream = await trio.open_tcp_stream(self.host, self.port)
            if self.ssl_context is not None:
                ssl_stream = trio.SSLStream(
                    stream, self.ssl_context, server_hostname=self.host, https_compatible=True
                )
                await ssl_stream.do_handshake()
                stream = ssl_stream
            connection = _Connection(stream, self.authority, self.scheme, stream_window)
            await connection.start()
        except (OSError, trio.BrokenResourceError) as exc:
            raise ConnectionLostError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self.nursery.start_soon(connection.read_loop, self.max_response_bytes)
        self.nursery.start_soon(connection.write_loop)
        # Requests wait for the broker's SETTINGS: opened before them, more streams
        # than its SETTINGS_MAX_CONCURRENT_STREAMS would cost the connection.
        with trio.move_on_after(SETTINGS_TIMEOUT_S):
            await connection.settings_received.wait()
        if not connection.settings_received.is_set() or not connection.alive:
            connection.fail_all("the broker sent no HTTP/2 settings")
            raise ConnectionLostError(
                f"{self.host}:{self.port} did not answer with HTTP/2 settings in time"
            )
        return connection

    async def request(
        self, path: str, body: bytes, content_type: str, method: str = "POST"
    ) -> RawResponse:
        connection = await self._connected()
        try:
            return await connection.request(path, body, content_type, method)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            connection.fail_all("the connection failed while sending")
            raise ConnectionLostError(f"the connection failed while sending: {exc}") from exc
        except h2.exceptions.ProtocolError as exc:
            raise ConnectionLostError(f"HTTP/2 error: {exc}") from exc

    @asynccontextmanager
    async def stream(
        self, path: str, body: bytes, content_type: str, method: str = "POST"
    ) -> AsyncIterator[StreamedResponse]:
        """``async with transport.stream(path, body, type) as response``: a body read as it comes.

        Entered once the response's headers arrived (``response.status``);
        leaving the block before the body ended resets the stream (CANCEL).
        Streams share a connection of their own (module docstring).
        """
        connection = await self._streaming_connected()
        try:
            stream_id, pending = await connection.open_stream(path, body, content_type, method)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            connection.fail_all("the connection failed while sending")
            raise ConnectionLostError(f"the connection failed while sending: {exc}") from exc
        except h2.exceptions.ProtocolError as exc:
            raise ConnectionLostError(f"HTTP/2 error: {exc}") from exc
        response = StreamedResponse(connection, stream_id, pending)
        try:
            yield response
        finally:
            response.close()

    async def aclose(self) -> None:
        for connection in (self._connection, self._streaming):
            if connection is not None and connection.alive:
                await self._close(connection)
        self._connection = self._streaming = None

    @staticmethod
    async def _close(connection: _Connection) -> None:
        connection.alive = False
        try:
            connection.h2.close_connection()
            await connection.flush()
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            h2.exceptions.ProtocolError,
        ):
            pass
        connection.fail_all("the client closed")
        await trio.aclose_forcefully(connection.stream)
