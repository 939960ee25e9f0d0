"""The listener: accept, limit, tell HTTP/2 from HTTP/1.1, shut down gracefully.

``Server.run`` binds (port 0 picks a free port, reported through
``task_status.started(port)``), accepts connections into one nursery and gives
each its own task, whose exceptions are caught and logged there: nothing a
connection does reaches the server's nursery. A connection past
``max_connections`` is closed at once. The first bytes decide the protocol
(read for at most ``idle_timeout_s``): the HTTP/2 connection preface ->
``H2ServerConnection``; an HTTP/1.x request line (``METHOD SP``) ->
``http1.H1ServerConnection``, which serves the same ``route`` (the AWS SDKs
and CLI speak HTTP/1.1 only); anything else is closed. The bytes read to
decide are handed to the connection. With TLS, ALPN offers ``h2`` then
``http/1.1`` and the same sniffing runs on the decrypted bytes.

``Server.shutdown()`` stops accepting and tells every connection to wind down
(HTTP/2: a GOAWAY; HTTP/1.1: an idle connection closes at once, a request in
flight is answered with ``connection: close``), letting in-flight requests
finish for up to ``shutdown_timeout_s``; then ``run`` returns. Cancelling
``run`` instead stops everything at once.
"""

from __future__ import annotations

import logging
import ssl

import trio

from ..operations import Broker
from . import http1
from .h2_connection import H2ServerConnection
from .metrics import ServerMetrics

logger = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    """A TLS server context for ``cert``/``key`` offering ALPN ``h2`` and ``http/1.1``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    # Our order is the preference: h2 for any client that offers it.
    context.set_alpn_protocols(["h2", "http/1.1"])
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Server:
    def __init__(
        self,
        broker: Broker,
        *,
        ssl_context: ssl.SSLContext | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.broker = broker
        self.config = broker.config
        self.ssl_context = ssl_context
        self.metrics = metrics if metrics is not None else ServerMetrics()
        self.metrics.attach_log(broker.log)
        self.connections: set[H2ServerConnection | http1.H1ServerConnection] = set()
        self._accepting = trio.CancelScope()
        self._stopping = False
        self.port: int | None = None

    async def run(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        logger.info("serving HTTP/2 and HTTP/1.1 on %s:%d", host, self.port)
        async with trio.open_nursery() as connections:
            task_status.started(self.port)
            with self._accepting:
                await trio.serve_listeners(
                    self._serve_connection, listeners, handler_nursery=connections
                )
            # Shutdown: no more accepting; connections wind down after their GOAWAY.
            for listener in listeners:
                await listener.aclose()
            connections.cancel_scope.deadline = trio.current_time() + self.config.shutdown_timeout_s

    def shutdown(self) -> None:
        """Stop accepting, wind every connection down, let in-flight requests finish."""
        self._stopping = True
        self._accepting.cancel()
        # Push subscriptions end at once (cleanly): their clients resubscribe elsewhere.
        hub = self.broker.extras.get("fanout")
        if hub is not None:
            hub.close()
        for connection in list(self.connections):
            connection.begin_shutdown()

    async def _serve_connection(self, stream: trio.abc.Stream) -> None:
        metrics = self.metrics
        if self._stopping or metrics.connections_open >= self.config.max_connections:
            metrics.connections_refused += 1
            await trio.aclose_forcefully(stream)
            return
        metrics.connections_open += 1
        metrics.connections_total += 1
        try:
            await self._serve_protocol(stream)
        except Exception:
            logger.exception("a connection failed")
        finally:
            metrics.connections_open -= 1
            await trio.aclose_forcefully(stream)

    async def _serve_protocol(self, stream: trio.abc.Stream) -> None:
        if self.ssl_context is not None:
            stream = trio.SSLStream(stream, self.ssl_context, server_side=True)
        first = b""
        with trio.move_on_after(self.config.idle_timeout_s):
            try:
                first = await _read_preface(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
        connection: H2ServerConnection | http1.H1ServerConnection
        if first.startswith(PREFACE):
            connection = H2ServerConnection(stream, self.broker, self.metrics, initial_data=first)
        elif http1.looks_like_http1(first):
            connection = http1.H1ServerConnection(
                stream, self.broker, self.metrics, initial_data=first
            )
        else:
            if first:
                logger.info("closing a connection that speaks neither HTTP/2 nor HTTP/1.1")
            return
        self.connections.add(connection)
        try:
            if self._stopping:
                connection.begin_shutdown()
            await connection.run()
        finally:
            self.connections.discard(connection)


async def _read_preface(stream: trio.abc.Stream) -> bytes:
    """Read until the data holds the whole preface, or departs from it and from ``METHOD SP``."""
    data = b""
    while (len(data) < len(PREFACE) and PREFACE.startswith(data)) or http1.undecided(data):
        chunk = await stream.receive_some(64 * 1024)
        if not chunk:
            break
        data += chunk
    return data


async def serve(
    broker: Broker,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``broker`` on ``host:port`` until cancelled (``task_status`` gets the port)."""
    await Server(broker, ssl_context=ssl_context).run(host, port, task_status=task_status)
