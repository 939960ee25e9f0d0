"""One HTTP/1.1 connection (h11): the wire of boto3, the AWS CLI and curl.

The listener hands a connection here when its first bytes are an HTTP/1.x
request line rather than the HTTP/2 preface; those bytes come along as
``initial_data``. Every request is answered by the same ``routing.route`` as
over HTTP/2, so the native ``POST /v1/<Operation>`` wire, the AWS ``POST /``
wire, ``/healthz`` and ``/metrics`` behave alike on both.

Theory of operation. HTTP/1.1 answers one request at a time, in order, so a
connection is one task and no nursery: read a request head, read its body,
``route`` it, write the answer, and go round again (keep-alive). h11 is the
protocol: it is fed bytes, gives events, and turns our events into bytes;
this module only moves bytes and decides.

* **Pipelining** needs nothing more: bytes that arrive behind a request stay
  in h11's buffer, and the next cycle parses them from there.
* **Bodies** (``content-length`` or chunked) are gathered whole, up to
  ``max_body_bytes``: a declared length over the limit is answered ``413
  RequestTooLargeError`` at once, a body that grows over it as soon as it
  does. ``Expect: 100-continue`` is answered ``100`` only when the body is
  wanted, i.e. when reading it would wait, so a refused upload is never sent.
* **Errors before a request is routed** (413, a head over ``max_header_bytes``
  -> 431, malformed HTTP -> 400) end the connection: the rest of the body is
  not read, and the framing after a protocol error cannot be trusted. The
  answer goes out with ``connection: close``; then we half-close and drop
  what the client still sends for at most ``LINGER_S`` / ``LINGER_BYTES``
  (RFC 9112 section 9.6): a close with unread bytes resets the connection, and
  a reset can destroy the answer in the client's receive buffer before it is
  read (on some systems; Linux keeps it). The head limit is
  h11's ``max_incomplete_event_size`` for a head still arriving, and for a
  complete head the HTTP/2 measure (RFC 9113 header-list size, pseudo-fields
  included), so one limit means the same on both protocols.
* **Timeouts.** A request head must arrive within ``idle_timeout_s`` of the
  connection becoming idle (which also bounds a client that trickles a head
  byte by byte); while a body arrives, each read may wait that long. On
  expiry the connection is closed without an answer.
* **Streamed responses** (SubscribeToShard) are chunked: each ``BodySink.send``
  is one h11 ``Data`` event written with ``send_all``, so it returns once the
  socket took it and a client that stops reading stalls its own subscription
  only (the hub counts credit itself; ``send_nowait`` declines, the hub then
  wakes the subscription's task). When ``run`` returns the body ends with the
  last chunk; if ``run`` fails the connection is closed mid-body, so the
  client sees a cut chunked body rather than a clean end. Nothing reads the
  socket while a response streams (bytes there are the next request's): a
  client that left is noticed at the next write, a heartbeat at the latest.
* **Graceful shutdown.** ``begin_shutdown`` cancels the wait of an idle
  connection at once; a connection with a request in flight answers it with
  ``connection: close`` and then closes. A streamed response ends when the
  hub closes on shutdown.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus

import h11
import trio

from ..config import BrokerConfig
from ..errors import HeaderListTooLargeError, RequestTooLargeError, ShardlineError, ValidationError
from ..operations import Broker
from .h2_connection import header_list_size
from .metrics import ServerMetrics
from .routing import Response, early_error, route

logger = logging.getLogger(__name__)

KIB = 1024
MIB = 1024 * KIB
#: Largest read from the socket at once.
READ_SIZE = 256 * KIB
#: After an answer that ends the connection early, what we drop before closing.
LINGER_S = 1.0
LINGER_BYTES = 4 * MIB

METHODS = (b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE")
_LONGEST_METHOD = max(len(method) for method in METHODS)


def looks_like_http1(data: bytes) -> bool:
    """True if ``data`` starts like an HTTP/1.x request line (``METHOD SP``)."""
    method, sep, _ = data.partition(b" ")
    return bool(sep) and method in METHODS


def undecided(data: bytes) -> bool:
    """True while ``data`` is too short to tell: it could still become ``METHOD SP``."""
    return len(data) <= _LONGEST_METHOD and any(
        (method + b" ").startswith(data) for method in METHODS
    )


class _ConnectionEnds(Exception):
    """The client left, broke the connection or timed out: nobody to answer."""


class _H1Sink:
    """A streamed body's chunks onto the connection, as chunked transfer coding (``BodySink``)."""

    __slots__ = ("connection",)

    def __init__(self, connection: H1ServerConnection) -> None:
        self.connection = connection

    async def send(self, chunk: bytes) -> None:
        if chunk:  # an empty chunk would read as the body's end
            await self.connection._send(h11.Data(data=chunk))

    def send_nowait(self, chunk: bytes) -> bool:
        # The socket's buffer is the only window HTTP/1.1 has, and a write that
        # does not wait cannot know it has room: the subscription's task sends.
        return False


class H1ServerConnection:
    """Serves one HTTP/1.1 connection over ``stream`` until it closes."""

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
        #: The request head being answered (its wire decides how a late refusal reads).
        self._headers: dict[str, str] = {}
        self.h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.config.max_header_bytes
        )
        self.shutting_down = False
        #: The wait for the next request head, while the connection is idle.
        self._idle: trio.CancelScope | None = None

    # -- lifecycle --------------------------------------------------------

    async def run(self) -> None:
        """Serve requests until the client leaves, an error, the idle timeout or shutdown."""
        if self.initial_data:  # h11 reads an empty chunk as the end of the input
            self.metrics.bytes_in += len(self.initial_data)
            self.h11.receive_data(self.initial_data)
        try:
            while await self._serve_one():
                self.h11.start_next_cycle()
                self._headers = {}
        except _ConnectionEnds:
            pass
        except h11.RemoteProtocolError as exc:
            # After the head (a bad chunked body), the answer is in the request's wire.
            await self._refuse(self._protocol_error(exc), "", self._headers)
        finally:
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(1),
                contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
            ):
                await self.stream.aclose()

    def begin_shutdown(self) -> None:
        """Close at once if idle; else answer the request in flight with ``connection: close``."""
        self.shutting_down = True
        if self._idle is not None:
            self._idle.cancel()

    async def _serve_one(self) -> bool:
        """One request and its answer; True if the connection may carry another."""
        request = await self._next_request()
        if request is None:
            return False
        method = request.method.decode("latin-1")
        path = request.target.decode("latin-1")
        headers = self._headers = _header_map(request.headers)
        size = header_list_size([(b":method", request.method), (b":path", request.target)])
        size += header_list_size(request.headers)
        if size > self.config.max_header_bytes:
            error: ShardlineError = HeaderListTooLargeError(
                f"the request's header list is {size} bytes, over the limit of "
                f"{self.config.max_header_bytes}"
            )
            await self._refuse(error, path, headers)
            return False
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.config.max_body_bytes:
            await self._refuse(_too_large(self.config.max_body_bytes), path, headers)
            return False
        body = await self._read_body()
        if body is None:
            await self._refuse(_too_large(self.config.max_body_bytes), path, headers)
            return False
        response = await route(self.broker, self.metrics, method, path, body, headers)
        if not await self._respond(method, response):
            return False
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    # -- reading ----------------------------------------------------------

    async def _next_request(self) -> h11.Request | None:
        """The next request head, or None when the connection should end quietly."""
        if self.shutting_down:
            # A request already received is still answered (with ``connection: close``).
            event = self.h11.next_event()
            return event if isinstance(event, h11.Request) else None
        with trio.CancelScope(deadline=trio.current_time() + self.config.idle_timeout_s) as idle:
            self._idle = idle
            try:
                event = await self._next_event()
            finally:
                self._idle = None
        if idle.cancelled_caught:
            return None  # idle too long, or shutting down
        return event if isinstance(event, h11.Request) else None

    async def _read_body(self) -> bytes | None:
        """The request's whole body; None if it grew over ``max_body_bytes``."""
        limit = self.config.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            with trio.move_on_after(self.config.idle_timeout_s) as waiting:
                event = await self._next_event()
            if waiting.cancelled_caught:
                raise _ConnectionEnds
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    return None
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise _ConnectionEnds

    async def _next_event(self) -> h11.Event:
        """h11's next event, reading the socket as it needs (raises ``_ConnectionEnds``)."""
        while True:
            event = self.h11.next_event()
            if isinstance(event, h11.ConnectionClosed):
                raise _ConnectionEnds
            if isinstance(event, h11.Event):
                return event
            if event is h11.PAUSED:  # not while we read: a request we did not finish
                raise _ConnectionEnds
            if self.h11.they_are_waiting_for_100_continue:
                await self._send(h11.InformationalResponse(status_code=100, headers=[]))
            try:
                data = await self.stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise _ConnectionEnds from None
            self.metrics.bytes_in += len(data)
            self.h11.receive_data(bytes(data))  # b"" is the end of the input: h11 knows

    # -- writing ----------------------------------------------------------

    async def _respond(self, method: str, response: Response) -> bool:
        """Send ``response``; False if the connection must close now."""
        streamed = response.streamed if method != "HEAD" else None
        headers = [("content-type", response.content_type)]
        if streamed is None:
            headers.append(("content-length", str(len(response.body))))
        else:
            headers.append(("transfer-encoding", "chunked"))
        headers += response.headers
        if self.shutting_down:
            headers.append(("connection", "close"))
        head = h11.Response(
            status_code=response.status, headers=headers, reason=_reason(response.status)
        )
        if streamed is None:
            # HEAD: the length of the body a GET would get, and no body (h11 sees to it).
            body = [h11.Data(data=response.body)] if response.body and method != "HEAD" else []
            await self._send_all([head, *body, h11.EndOfMessage()])
            return True
        await self._send(head)
        try:
            await streamed.run(_H1Sink(self))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        except Exception:
            logger.exception("a streamed response failed: cutting its connection")
            return False
        await self._send(h11.EndOfMessage())
        return True

    async def _refuse(
        self, error: ShardlineError, path: str, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer ``error`` with ``connection: close``, then let the connection go.

        In the request's wire (``headers``): an AWS client gets an AWS error body.
        """
        if path:
            self.metrics.count_request(path.rsplit("/", 1)[-1], error.wire_name)
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return  # mid-answer: nothing more can be said
        response = early_error(headers or {}, error)
        head = h11.Response(
            status_code=response.status,
            headers=[
                ("content-type", response.content_type),
                ("content-length", str(len(response.body))),
                *response.headers,
                ("connection", "close"),
            ],
            reason=_reason(response.status),
        )
        try:
            await self._send_all([head, h11.Data(data=response.body), h11.EndOfMessage()])
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        await self._linger()

    def _protocol_error(self, exc: h11.RemoteProtocolError) -> ShardlineError:
        if exc.error_status_hint == 431:
            return HeaderListTooLargeError(
                f"the request head is over the limit of {self.config.max_header_bytes} bytes"
            )
        return ValidationError(f"malformed HTTP/1.1 request: {exc}")

    async def _linger(self) -> None:
        """Half-close, then drop what the client still sends, within bounds."""
        with (
            trio.move_on_after(LINGER_S),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            if isinstance(self.stream, trio.abc.HalfCloseableStream):
                await self.stream.send_eof()
            dropped = 0
            while dropped < LINGER_BYTES:
                data = await self.stream.receive_some(READ_SIZE)
                if not data:
                    return
                dropped += len(data)
                self.metrics.bytes_in += len(data)

    async def _send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            self.metrics.bytes_out += len(data)
            await self.stream.send_all(data)

    async def _send_all(self, events: Sequence[h11.Event]) -> None:
        """Several events in one socket write."""
        data = b"".join(self.h11.send(event) or b"" for event in events)
        self.metrics.bytes_out += len(data)
        await self.stream.send_all(data)


def _header_map(headers: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case names to values; a repeated header's values joined with ','.

    ',' rather than ', ': as SigV4's canonical headers join them, so a signed
    header sent twice still verifies (both are valid HTTP).
    """
    mapped: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1")  # h11 gives names lower-case
        value = raw_value.decode("latin-1")
        mapped[name] = f"{mapped[name]},{value}" if name in mapped else value
    return mapped


def _too_large(limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(f"the request body exceeds the limit of {limit} bytes")


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""
