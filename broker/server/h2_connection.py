"""One HTTP/2 connection: a read loop, one task per request, coalesced writes.

Theory of operation. The connection's nursery owns everything it starts: the
read loop (the connection's main task), an idle watchdog, and one task per
request. h2 is a synchronous state machine, so tasks touch it freely between
awaits; only the socket needs care:

* **Writes** go through ``_flush``: under ``_send_lock`` it takes *all* of
  h2's pending output (``data_to_send()``) and writes it with one
  ``send_all``. Frames queued by several tasks while one write is in progress
  leave in the next write, so writes are coalesced into large ones.
* **Inbound flow control.** A request body is buffered per stream up to
  ``max_body_bytes`` (past that: 413 ``ValidationException`` right away, the
  rest discarded unread, the stream reset). Received data is acknowledged
  (``acknowledge_received_data``) once it is buffered, while the bodies held
  by the connection stay within ``body_budget`` bytes; beyond that the
  acknowledgement waits until a request finishes and frees its body, so a
  client that uploads faster than requests complete is held back by its
  windows. Memory per connection is at most ``body_budget`` plus one
  connection window.
* **Outbound flow control.** A response body is sent in frames of at most
  the peer's frame size while the stream's and the connection's windows
  allow; with a window at zero the task parks on the stream's ``trio.Event``,
  which ``WindowUpdated`` / ``RemoteSettingsChanged`` set. Nothing polls.
* **Limits.** SETTINGS advertise the header-list size and the concurrent
  streams; h2 refuses excess streams. A request whose header list (RFC 9113
  size: name + value + 32 octets per field) exceeds ``max_header_bytes`` is
  answered 431 ``ValidationException`` (RFC 9113 section 10.5.1) and its body
  discarded; the connection stays. The HPACK decoder itself stops at
  ``HEADER_DECODE_FACTOR`` times the limit: past that the block cannot be
  decoded to its end, so the connection's compression state is lost and h2
  ends the connection with GOAWAY ``ENHANCE_YOUR_CALM``. A protocol violation
  makes h2 queue a GOAWAY; we send it and close this connection only.
* **Idle timeout.** With no request in flight for ``idle_timeout_s`` the
  connection sends GOAWAY and closes.
* **Graceful shutdown.** ``begin_shutdown`` writes a GOAWAY frame (built by
  hand, since h2's ``close_connection`` would forbid answering the streams
  still in flight), refuses newer streams, and closes once in-flight requests
  are answered.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import trio
from h2.connection import ConnectionInputs
from h2.errors import ErrorCodes
from h2.stream import StreamInputs
from hyperframe.frame import GoAwayFrame

from ..config import BrokerConfig
from ..errors import HeaderListTooLargeError, RequestTooLargeError, ShardlineError
from ..operations import Broker
from ..protocol import h2_patch
from ..protocol.frames import data_frames
from ..protocol.receiving import SocketReader
from ..protocol.sending import write_now
from .metrics import ServerMetrics
from .routing import Response, early_error, route

h2_patch.apply()

logger = logging.getLogger(__name__)

KIB = 1024
MIB = 1024 * KIB
#: Largest DATA frame we accept (SETTINGS_MAX_FRAME_SIZE); h2's default is 16 KiB.
MAX_FRAME_SIZE = 1 * MIB
#: Initial window of every stream we receive on, and the connection's window.
STREAM_WINDOW = 4 * MIB
CONNECTION_WINDOW = 16 * MIB
#: Largest read from the socket at once.
READ_SIZE = 256 * KIB
DEFAULT_H2_WINDOW = 65_535
#: The HPACK decoder decodes header lists up to this many times ``max_header_bytes``
#: (so that a list over the limit can be answered 431 with the connection kept);
#: past it decoding stops, which costs the connection (HPACK bomb protection).
HEADER_DECODE_FACTOR = 4


def header_list_size(headers: Iterable[tuple[bytes | str, bytes | str]]) -> int:
    """The size SETTINGS_MAX_HEADER_LIST_SIZE limits: name + value octets + 32 per field."""
    return sum(32 + len(name) + len(value) for name, value in headers)


@dataclass
class _Stream:
    stream_id: int
    method: str
    path: str
    #: The request's regular headers (not the pseudo-headers), names lower-case.
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    #: Set once the request is answered early (413) or reset: data is discarded.
    discarding: bool = False
    reset: bool = False
    #: A task answers this stream (it then owns the stream's bookkeeping).
    started: bool = False
    window_open: trio.Event = field(default_factory=trio.Event)


class _H2Sink:
    """A streamed body's chunks onto one HTTP/2 stream (``BodySink``)."""

    __slots__ = ("connection", "stream")

    def __init__(self, connection: H2ServerConnection, stream: _Stream) -> None:
        self.connection = connection
        self.stream = stream

    async def send(self, chunk: bytes) -> None:
        if not await self.connection._send_data(self.stream, chunk, end_stream=False):
            raise trio.BrokenResourceError("the client reset the stream")
        await self.connection._flush()

    def send_nowait(self, chunk: bytes) -> bool:
        return self.connection.push_nowait(self.stream, chunk)


class H2ServerConnection:
    """Serves one HTTP/2 connection over ``stream`` until it closes."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        broker: Broker,
        metrics: ServerMetrics,
        *,
        initial_data: bytes = b"",
    ) -> None:
        self.stream = stream
        self.broker = broker
        self.config: BrokerConfig = broker.config
        self.metrics = metrics
        self.initial_data = initial_data
        self.body_budget = max(64 * MIB, 2 * self.config.max_body_bytes)
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=False,
                header_encoding=None,
                # Our responses' headers are built here, lower-case and valid: checking
                # and normalising them again costs ~7 us a response. Requests are checked.
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.config.max_concurrent_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self.config.max_header_bytes,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            },
        )
        self.h2.max_inbound_frame_size = MAX_FRAME_SIZE
        # h2 only touches the decoder's limit when the advertised value changes,
        # which it never does after this.
        self.h2.decoder.max_header_list_size = HEADER_DECODE_FACTOR * self.config.max_header_bytes
        self.streams: dict[int, _Stream] = {}
        self.in_flight = 0
        self.buffered = 0
        self.deferred_acks: list[tuple[int, int]] = []
        self.send_lock = trio.Lock()
        #: What a direct write (``send_soon``) left over, or frames framed outside h2
        #: (``push_nowait``) while a send was in progress: sent first by the write loop.
        #: A bytearray: pushes append to it while a send is in progress, without a copy.
        self.unsent = bytearray()
        #: The plain socket, for writes without a trio checkpoint (``send_soon``); None for TLS.
        self.sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        #: Set when the read loop left output (acknowledgements, settings) to send.
        self.output_ready = trio.Event()
        self.last_activity = trio.current_time()
        self.shutting_down = False
        self.goaway_last_stream = 0
        self.highest_stream = 0
        self.nursery: trio.Nursery | None = None

    # -- lifecycle --------------------------------------------------------

    async def run(self) -> None:
        """Serve until the peer leaves, a protocol error, idle timeout or shutdown."""
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                self.h2.initiate_connection()
                self.h2.increment_flow_control_window(CONNECTION_WINDOW - DEFAULT_H2_WINDOW)
                await self._flush()
                nursery.start_soon(self._watch_idle)
                nursery.start_soon(self._write_loop)
                if not self.initial_data or await self._receive(self.initial_data):
                    await self._read_loop()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self._close_stream()

    async def _read_loop(self) -> None:
        reader = SocketReader(self.stream, READ_SIZE)
        while True:
            try:
                data = await reader.receive()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            if not await self._receive(data):
                return

    async def _receive(self, data: bytes | bytearray) -> bool:
        """Feed ``data`` to h2 and act on its events; False when the connection must end."""
        self.metrics.bytes_in += len(data)
        self.last_activity = trio.current_time()
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            logger.info("closing a connection after a protocol error: %s", exc)
            await self._flush_quietly()  # h2 has queued the GOAWAY
            return False
        try:
            for event in events:
                self._on_event(event)
        except h2.exceptions.ProtocolError as exc:
            logger.info("closing a connection after a protocol error: %s", exc)
            self.h2.close_connection(ErrorCodes.PROTOCOL_ERROR)
            await self._flush_quietly()
            return False
        # Never write from the read loop: with both peers blocked writing into
        # full socket buffers, neither would read again (a write-write deadlock).
        self.output_ready.set()
        return self.h2.state_machine.state != h2.connection.ConnectionState.CLOSED

    def begin_shutdown(self) -> None:
        """Stop taking new streams (GOAWAY); close once the in-flight ones are answered."""
        if self.shutting_down:
            return
        self.shutting_down = True
        self.goaway_last_stream = self.highest_stream
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.highest_stream
        frame.error_code = ErrorCodes.NO_ERROR
        if self.nursery is not None:
            self.nursery.start_soon(self._write_raw, frame.serialize())
        self._close_if_done()

    def _close_if_done(self) -> None:
        if self.shutting_down and self.in_flight == 0 and self.nursery is not None:
            self.nursery.start_soon(self._goodbye)

    async def _goodbye(self) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.close_connection(last_stream_id=self.goaway_last_stream or self.highest_stream)
        await self._flush_quietly()
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()

    async def _watch_idle(self) -> None:
        timeout = self.config.idle_timeout_s
        while True:
            await trio.sleep_until(self.last_activity + timeout)
            now = trio.current_time()
            if self.in_flight == 0 and now >= self.last_activity + timeout:
                logger.debug("closing a connection idle for %.1f s", timeout)
                self.shutting_down = True
                await self._goodbye()
                return
            if self.in_flight:
                self.last_activity = now

    # -- events -----------------------------------------------------------

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._on_request(event)
        elif isinstance(event, h2.events.DataReceived):
            self._on_data(event)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None and not stream.discarding:
                self._start_request(stream)
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.reset = True
                stream.window_open.set()
                self._release(stream)
                if not stream.started:
                    self._forget(stream)
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.window_open.set()
            else:
                self._wake_all()
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._wake_all()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.shutting_down = True
            self._close_if_done()

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        self.highest_stream = max(self.highest_stream, stream_id)
        if self.shutting_down:
            self.h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        headers = dict(event.headers or ())
        method = bytes(headers.get(b":method", b"")).decode("latin-1")
        path = bytes(headers.get(b":path", b"")).decode("latin-1")
        regular = {
            bytes(name).decode("latin-1"): bytes(value).decode("latin-1")
            for name, value in headers.items()
            if not name.startswith(b":")
        }
        if "host" not in regular and b":authority" in headers:
            # HTTP/2 clients (Netty) send the Host they signed (SigV4) as :authority.
            regular["host"] = bytes(headers[b":authority"]).decode("latin-1")
        stream = _Stream(stream_id, method, path, regular)
        self.streams[stream_id] = stream
        self.in_flight += 1
        size = header_list_size(event.headers or ())
        if size > self.config.max_header_bytes:
            error = HeaderListTooLargeError(
                f"the request's header list is {size} bytes, over the limit of "
                f"{self.config.max_header_bytes} (SETTINGS_MAX_HEADER_LIST_SIZE)"
            )
            self._answer_early(stream, error)
            return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.config.max_body_bytes:
            self._reject_too_large(stream)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        data = event.data or b""
        length = event.flow_controlled_length or 0
        if stream is None or stream.discarding:
            self._ack(event.stream_id, length)
            return
        if stream.size + len(data) > self.config.max_body_bytes:
            self._ack(event.stream_id, length)
            self._reject_too_large(stream)
            return
        stream.chunks.append(data)
        stream.size += len(data)
        self.buffered += len(data)
        if self.buffered <= self.body_budget:
            self._ack(event.stream_id, length)
        else:
            self.deferred_acks.append((event.stream_id, length))

    def _reject_too_large(self, stream: _Stream) -> None:
        error = RequestTooLargeError(
            f"the request body exceeds the limit of {self.config.max_body_bytes} bytes"
        )
        self._answer_early(stream, error)

    def _answer_early(self, stream: _Stream, error: ShardlineError) -> None:
        """Answer ``error`` now; the body (if any) is discarded unread."""
        stream.discarding = True
        self._release(stream)
        self.metrics.count_request(stream.path.rsplit("/", 1)[-1], error.wire_name)
        self._start_task(stream, early_error(stream.headers, error))

    def _release(self, stream: _Stream) -> None:
        """Free a stream's buffered body and send the acknowledgements it held back."""
        self.buffered -= stream.size
        stream.chunks = []
        stream.size = 0
        while self.deferred_acks and self.buffered <= self.body_budget:
            stream_id, length = self.deferred_acks.pop(0)
            self._ack(stream_id, length)

    def _ack(self, stream_id: int, length: int) -> None:
        if length:
            self.h2.acknowledge_received_data(length, stream_id)

    def _wake_all(self) -> None:
        for stream in self.streams.values():
            stream.window_open.set()

    # -- requests ---------------------------------------------------------

    def _start_request(self, stream: _Stream) -> None:
        self._start_task(stream, None)

    def _start_task(self, stream: _Stream, early: Response | None) -> None:
        assert self.nursery is not None
        stream.started = True
        self.nursery.start_soon(self._handle, stream, early)

    async def _handle(self, stream: _Stream, early: Response | None) -> None:
        try:
            if early is None:
                body = b"".join(stream.chunks)
                self._release(stream)
                response = await route(
                    self.broker, self.metrics, stream.method, stream.path, body, stream.headers
                )
            else:
                response = early
            await self._respond(stream, response)
        except (h2.exceptions.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the stream or the connection went away: nobody to answer
        except Exception:
            logger.exception("answering stream %d failed", stream.stream_id)
            # Never leave the client waiting on a stream nobody will answer.
            state = self.h2.streams.get(stream.stream_id)
            if not stream.reset and state is not None and not state.closed:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.h2.reset_stream(stream.stream_id, ErrorCodes.INTERNAL_ERROR)
                self.send_soon()
        finally:
            self._release(stream)
            self._forget(stream)

    def _forget(self, stream: _Stream) -> None:
        if self.streams.pop(stream.stream_id, None) is not None:
            self.in_flight -= 1
        self.last_activity = trio.current_time()
        self._close_if_done()

    async def _respond(self, stream: _Stream, response: Response) -> None:
        if stream.reset:
            return
        if response.streamed is not None and stream.method != "HEAD":
            await self._respond_streamed(stream, response)
            return
        stream_id = stream.stream_id
        headers = [
            (b":status", str(response.status).encode()),
            (b"content-type", response.content_type.encode()),
            (b"content-length", str(len(response.body)).encode()),
            *[(name.encode(), value.encode()) for name, value in response.headers],
        ]
        body = response.body if stream.method != "HEAD" else b""
        self.h2.send_headers(stream_id, headers, end_stream=not body)
        if body and not await self._send_data(stream, body, end_stream=True):
            return
        if stream.discarding and not stream.reset:
            # Answered before the whole body arrived: ask the client to stop sending.
            state = self.h2.streams.get(stream_id)
            if state is not None and not state.closed:
                self.h2.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        # Written at once when nothing else is sending (``send_soon``); what the socket
        # does not take is sent by waiting for room, so a client that does not read
        # still holds its handler (and its stream) here.
        self.send_soon()
        if self.sock is None or self.unsent or self.send_lock.locked():
            await self._flush()

    async def _send_data(self, stream: _Stream, body: bytes, *, end_stream: bool) -> bool:
        """Queue ``body`` on the stream as its windows allow; False if the stream was reset.

        With a window at zero, what is queued is flushed and the task waits for
        the peer's WINDOW_UPDATE; the bytes not yet queued stay with the caller.
        """
        stream_id = stream.stream_id
        view = memoryview(body)
        sent = 0
        while sent < len(body):
            if stream.reset:
                return False
            window = self.h2.local_flow_control_window(stream_id)
            if window <= 0:
                # A fresh event *before* the flush, so a wake-up during it is not lost.
                stream.window_open = trio.Event()
                await self._flush()
                if stream.reset:
                    return False
                if self.h2.local_flow_control_window(stream_id) <= 0:
                    await stream.window_open.wait()
                continue
            frame_size = self.h2.max_outbound_frame_size
            end = min(len(body), sent + window)
            while sent < end:
                size = min(frame_size, end - sent)
                last = end_stream and sent + size == len(body)
                self.h2.send_data(stream_id, view[sent : sent + size], end_stream=last)
                sent += size
        return not stream.reset

    async def _respond_streamed(self, stream: _Stream, response: Response) -> None:
        """A body produced over time: each chunk sent as the stream's window allows."""
        assert response.streamed is not None
        headers = [
            (b":status", str(response.status).encode()),
            (b"content-type", response.content_type.encode()),
            *[(name.encode(), value.encode()) for name, value in response.headers],
        ]
        self.h2.send_headers(stream.stream_id, headers)
        await self._flush()
        try:
            await response.streamed.run(_H2Sink(self, stream))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The client went, or stopped reading and the body was cut: reset the
            # stream (without waiting: the connection's other streams go on).
            if not stream.reset:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.h2.reset_stream(stream.stream_id, ErrorCodes.CANCEL)
                self.send_soon()
            raise
        except Exception:
            # Not a clean end: reset the stream, so the client knows at once.
            logger.exception("a streamed response failed on stream %d", stream.stream_id)
            if not stream.reset:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.h2.reset_stream(stream.stream_id, ErrorCodes.INTERNAL_ERROR)
                await self._flush()
            return
        if not stream.reset:
            self.h2.send_data(stream.stream_id, b"", end_stream=True)
            await self._flush()

    # -- the socket -------------------------------------------------------

    def push_nowait(self, stream: _Stream, chunk: bytes) -> bool:
        """Send ``chunk`` on a streamed response now if both windows have room; else False.

        The fan-out hub's commit listener calls this for every subscriber at
        the tail (``BodySink.send_nowait``). The DATA frames are framed here
        (``frames.data_frames``) rather than by h2's ``send_data``, which builds,
        serialises and logs a frame object per frame (``python -m bench.micro
        push``: 5.3 us a push through ``send_data``, 1.7 us here). h2 still decides and
        counts: its two state machines take the send as ``send_data`` would
        (a reset or closed stream, a closed connection refuse it), and its two
        outbound windows are debited by the same amount, so its flow control
        stays exact for everything it frames itself later.
        """
        h2_connection = self.h2
        state = h2_connection.streams.get(stream.stream_id)
        size = len(chunk)
        if stream.reset or state is None:
            return False
        window = min(h2_connection.outbound_flow_control_window, state.outbound_flow_control_window)
        if size > window:
            return False
        try:
            h2_connection.state_machine.process_input(ConnectionInputs.SEND_DATA)
            state.state_machine.process_input(StreamInputs.SEND_DATA)
        except h2.exceptions.ProtocolError:
            return False
        h2_connection.outbound_flow_control_window -= size
        state.outbound_flow_control_window -= size
        self.send_soon(data_frames(stream.stream_id, chunk, h2_connection.max_outbound_frame_size))
        return True

    def send_soon(self, frames: bytes = b"") -> None:
        """Send h2's output now if nothing else is sending, else wake the write loop.

        The commit listener pushes one batch to many subscribers at once:
        writing here, without a wait, spares each connection's write loop a
        wake-up (at 1,000 records/s to ten subscribers, ten task switches per
        commit). Only on plain sockets, and only while no send is in progress
        (the write loop holds ``send_lock`` across its awaits, so bytes never
        interleave); what the socket does not take now is left to the write loop,
        ahead of anything queued later. ``frames`` (framed outside h2) follow
        h2's output: with a send in progress both join ``unsent``, in order.
        """
        if self.sock is None or self.unsent or self.send_lock.locked():
            if frames:
                self.unsent += self.h2.data_to_send()
                self.unsent += frames
            self.output_ready.set()
            return
        data = self.h2.data_to_send()
        if frames:
            data += frames
        elif not data:
            return
        # What the socket refuses (full, closed, broken) the write loop sends or fails on.
        sent = write_now(self.sock, data)
        self.metrics.bytes_out += sent
        if sent < len(data):
            self.unsent = bytearray(memoryview(data)[sent:])
            self.output_ready.set()

    async def _flush(self) -> None:
        async with self.send_lock:
            data: bytes | bytearray = self.h2.data_to_send()
            if self.unsent:
                self.unsent += data
                data, self.unsent = self.unsent, bytearray()
            if data:
                self.metrics.bytes_out += len(data)
                await self.stream.send_all(data)

    async def _write_loop(self) -> None:
        """Send what the read loop queued; ends with the connection's nursery."""
        while True:
            await self.output_ready.wait()
            self.output_ready = trio.Event()
            try:
                await self._flush()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def _flush_quietly(self) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._flush()

    async def _write_raw(self, data: bytes) -> None:
        try:
            async with self.send_lock:
                pending = self.unsent + self.h2.data_to_send() + data
                self.unsent = bytearray()
                self.metrics.bytes_out += len(pending)
                await self.stream.send_all(pending)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _close_stream(self) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.aclose()
