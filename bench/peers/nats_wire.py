"""The NATS client protocol on a plain socket: what the benchmark's load generators need.

The NATS peer's load generators (the fan-out producer, the filling of a
stream before a drain) and its stream administration do not go through
nats-py: they write pre-encoded protocol frames and read the server's answers
with the small parser below, so that generating load takes little of the
machine the measured clients share. The subset of the protocol spoken
(text lines ending in CRLF; https://docs.nats.io/reference/reference-protocols/nats-protocol):

- client to server: ``CONNECT <json>`` (verbose off, no headers), ``SUB
  <inbox> 1`` once, ``PUB <subject> <inbox> <#bytes>`` CRLF payload CRLF,
  ``PING``, ``PONG``;
- server to client: ``INFO <json>`` and ``+OK`` (skipped), ``PING``
  (answered with ``PONG``), ``PONG`` (the end of the handshake), ``MSG
  <subject> <sid> [reply] <#bytes>`` CRLF payload CRLF (returned), ``-ERR
  '<text>'`` (raised).

Every ``PUB`` names the connection's one inbox as its reply subject, so that
JetStream's acknowledgement of each message (``{"stream":..,"seq":..}``, or
``{"error":{..}}``) and the JetStream API's answers (``$JS.API.*``) arrive
there in order.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import threading
from typing import Any

from . import HOST

TIMEOUT_S = 120.0
#: Bytes read from the socket at a time: small enough that parsing one chunk holds the
#: interpreter lock for about a millisecond (the fan-out producer's clock thread waits).
_CHUNK = 1 << 16


class WireConnection:
    """A NATS client connection reduced to what the load generators need.

    ``PUB`` frames are written as pre-encoded bytes; the server's messages are
    read by a parser that answers ``PING`` and returns each ``MSG``'s payload.
    One subscription (sid 1, ``self.inbox``) receives every reply: JetStream's
    acknowledgements and the API's answers. Writes may come from one thread
    while another reads (the socket is full duplex; writes hold a lock).
    """

    def __init__(self, port: int, timeout: float = TIMEOUT_S) -> None:
        self._sock = socket.create_connection((HOST, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._lock = threading.Lock()
        self._data = b""
        self._at = 0
        self.inbox = f"_INBOX.shardline-bench.{os.getpid()}.{random.getrandbits(40):x}".encode()
        connect = {"verbose": False, "pedantic": False, "protocol": 1, "headers": False}
        self.send(
            b"CONNECT %s\r\nSUB %s 1\r\nPING\r\n" % (json.dumps(connect).encode(), self.inbox)
        )
        if self._next() is not None:  # INFO is skipped; the PONG ends the handshake
            raise RuntimeError("nats-server sent a message before the handshake ended")

    def close(self) -> None:
        self._sock.close()

    def abort(self) -> None:
        """Wake a thread blocked reading: it sees the connection closed."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def send(self, frames: bytes) -> None:
        with self._lock:
            self._sock.sendall(frames)

    def pub(self, subject: bytes, payload: bytes) -> bytes:
        """A ``PUB`` frame whose acknowledgement comes to ``self.inbox``."""
        return b"PUB %s %s %d\r\n%s\r\n" % (subject, self.inbox, len(payload), payload)

    def _fill(self) -> None:
        chunk = self._sock.recv(_CHUNK)
        if not chunk:
            raise ConnectionError("nats-server closed the connection")
        self._data = self._data[self._at :] + chunk
        self._at = 0

    def _next(self) -> bytes | None:
        """The next ``MSG``'s payload, or None for a ``PONG``; answers ``PING``, skips the rest."""
        while True:
            end = self._data.find(b"\r\n", self._at)
            if end < 0:
                self._fill()
                continue
            line = self._data[self._at : end]
            if line.startswith(b"MSG "):
                stop = end + 2 + int(line.rsplit(b" ", 1)[1])
                if len(self._data) < stop + 2:
                    self._fill()
                    continue
                self._at = stop + 2
                return self._data[end + 2 : stop]
            self._at = end + 2
            if line == b"PING":
                self.send(b"PONG\r\n")
            elif line == b"PONG":
                return None
            elif line.startswith(b"-ERR"):
                raise RuntimeError(f"nats-server: {line.decode(errors='replace')}")
            # INFO and +OK need nothing.

    def acks(self, count: int) -> tuple[int, int]:
        """Read ``count`` acknowledgements: (stored, refused)."""
        stored = refused = 0
        while stored + refused < count:
            payload = self._next()
            if payload is None:
                continue
            if b'"error"' in payload:
                refused += 1
            else:
                stored += 1
        return stored, refused

    def request(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        """A JetStream API call: its JSON answer; RuntimeError when it is an error."""
        self.send(self.pub(subject.encode(), json.dumps(body).encode()))
        while (payload := self._next()) is None:
            pass
        answer: dict[str, Any] = json.loads(payload)
        if "error" in answer:
            raise RuntimeError(f"nats-server refused {subject}: {answer['error']}")
        return answer


def create_stream(port: int, name: str) -> None:
    """A stream ``name`` over the subjects ``name.>``: file storage, limits, one replica."""
    config: dict[str, Any] = {"name": name, "subjects": [f"{name}.>"], "storage": "file"}
    config |= {"retention": "limits", "discard": "old", "num_replicas": 1}
    connection = WireConnection(port)
    try:
        connection.request(f"$JS.API.STREAM.CREATE.{name}", config)
    finally:
        connection.close()


def stream_messages(port: int, name: str) -> int:
    """How many messages the stream ``name`` holds."""
    connection = WireConnection(port)
    try:
        info = connection.request(f"$JS.API.STREAM.INFO.{name}", {})
    finally:
        connection.close()
    return int(info["state"]["messages"])
