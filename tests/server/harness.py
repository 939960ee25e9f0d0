"""A real server on 127.0.0.1 port 0 with test-only operations, and bare clients to poke it.

``running_server`` serves the real operation table plus a few test-only ones;
``RawH2`` is an HTTP/2 client that sends exactly what a test asks for;
``read_until_closed`` reads a plain socket to its end.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
import trio

from broker.config import BrokerConfig
from broker.errors import ResourceNotFoundError
from broker.operations import OPERATIONS, Broker, open_broker
from broker.server import Server


@dataclass
class SlowGate:
    """Lets a test hold ``TestSlow`` requests until it opens the gate."""

    entered: trio.Event = field(default_factory=trio.Event)
    release: trio.Event = field(default_factory=trio.Event)


@dataclass
class Running:
    server: Server
    port: int
    gate: SlowGate
    stopped: trio.Event

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def install_test_operations(monkeypatch: pytest.MonkeyPatch, gate: SlowGate) -> None:
    async def echo(broker: Broker, request: dict[str, Any]) -> dict[str, Any]:
        return {"Echo": request}

    async def slow(broker: Broker, request: dict[str, Any]) -> dict[str, Any]:
        gate.entered.set()
        await gate.release.wait()
        return {"Slow": True}

    async def boom(broker: Broker, request: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("a bug in a handler")

    async def missing(broker: Broker, request: dict[str, Any]) -> dict[str, Any]:
        raise ResourceNotFoundError("Stream nope not found")

    async def big(broker: Broker, request: dict[str, Any]) -> dict[str, Any]:
        return {"Data": b"\xab" * int(request.get("Size", 0))}

    for name, handler in {
        "TestEcho": echo,
        "TestSlow": slow,
        "TestBoom": boom,
        "TestMissing": missing,
        "TestBig": big,
    }.items():
        monkeypatch.setitem(OPERATIONS, name, handler)


@asynccontextmanager
async def running_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **settings: Any
) -> AsyncIterator[Running]:
    gate = SlowGate()
    install_test_operations(monkeypatch, gate)
    config = BrokerConfig(data=str(tmp_path / "data"), port=0, **settings)
    async with open_broker(config) as broker, trio.open_nursery() as nursery:
        server = Server(broker)
        stopped = trio.Event()

        async def run(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await server.run("127.0.0.1", 0, task_status=task_status)
            finally:
                stopped.set()

        port = await nursery.start(run)
        yield Running(server, port, gate, stopped)
        gate.release.set()
        nursery.cancel_scope.cancel()


async def read_until_closed(stream: trio.abc.ReceiveStream, limit: float = 5.0) -> bytes:
    """Everything received until the peer closes (EOF or reset); fails after ``limit``."""
    data = b""
    with trio.fail_after(limit):
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return data
            if not chunk:
                return data
            data += chunk


class RawH2:
    """A bare HTTP/2 client connection, for what ``Client`` never sends (or hides).

    Sequential: each call reads the socket until what it waits for arrives,
    records every h2 event in ``events`` and answers what h2 queues (SETTINGS
    acknowledgements, window updates). Every wait is bounded by ``limit`` seconds.
    """

    def __init__(self, stream: trio.SocketStream, limit: float = 5.0) -> None:
        self.stream = stream
        self.limit = limit
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.events: list[h2.events.Event] = []
        self.closed = False

    @classmethod
    async def open(cls, port: int) -> RawH2:
        """Connect and finish the SETTINGS exchange in both directions."""
        connection = cls(await trio.open_tcp_stream("127.0.0.1", port))
        connection.h2.initiate_connection()
        await connection.stream.send_all(connection.h2.data_to_send())
        settled = await connection.wait_for(
            lambda: (
                connection.seen(h2.events.SettingsAcknowledged)
                and connection.seen(h2.events.RemoteSettingsChanged)
            )
        )
        assert settled, "the server closed the connection during the SETTINGS exchange"
        return connection

    async def request(
        self,
        method: str,
        path: str,
        *,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
    ) -> int:
        """Send a request (headers and body in one write); its stream id."""
        stream_id = self.h2.get_next_available_stream_id()
        headers = self.request_headers(method, path, extra_headers)
        self.h2.send_headers(stream_id, headers, end_stream=not body)
        if body:
            self.h2.send_data(stream_id, body, end_stream=True)
        await self.stream.send_all(self.h2.data_to_send())
        return stream_id

    @staticmethod
    def request_headers(
        method: str, path: str, extra_headers: list[tuple[bytes, bytes]] | None = None
    ) -> list[tuple[bytes, bytes]]:
        """The header list ``request`` sends."""
        return [
            (b":method", method.encode()),
            (b":scheme", b"http"),
            (b":authority", b"127.0.0.1"),
            (b":path", path.encode()),
            *(extra_headers or []),
        ]

    async def response(self, stream_id: int) -> tuple[int, bytes]:
        """The status and body of ``stream_id``; fails if the stream or connection ends first."""

        def ended() -> bool:
            return any(
                isinstance(e, h2.events.StreamEnded | h2.events.StreamReset)
                and e.stream_id == stream_id
                for e in self.events
            )

        if not await self.wait_for(ended):
            raise AssertionError(
                f"the connection closed before stream {stream_id} ended: {self.terminated()}"
            )
        status, body = 0, b""
        for event in self.events:
            if getattr(event, "stream_id", None) != stream_id:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                status = int(dict(event.headers or ())[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                body += event.data or b""
            elif isinstance(event, h2.events.StreamReset) and not status:
                raise AssertionError(f"stream {stream_id} reset: {event.error_code!r}")
        return status, body

    async def wait_closed(self) -> None:
        """Read until the server closes the connection."""
        await self.wait_for(lambda: False)

    def seen(self, kind: type[h2.events.Event]) -> bool:
        return any(isinstance(event, kind) for event in self.events)

    def terminated(self) -> h2.events.ConnectionTerminated | None:
        """The GOAWAY the server sent, if any."""
        for event in self.events:
            if isinstance(event, h2.events.ConnectionTerminated):
                return event
        return None

    async def wait_for(self, condition: Callable[[], bool]) -> bool:
        """Read until ``condition()`` holds (True) or the server closes the connection (False)."""
        with trio.fail_after(self.limit):
            while not condition():
                if self.closed:
                    return False
                await self._pump()
        return True

    async def _pump(self) -> None:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            data = b""
        if not data:
            self.closed = True
            return
        try:
            self.events.extend(self.h2.receive_data(data))
        except h2.exceptions.ProtocolError:
            self.closed = True
            return
        pending = self.h2.data_to_send()
        if pending:
            with contextlib.suppress(trio.BrokenResourceError):
                await self.stream.send_all(pending)

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)
