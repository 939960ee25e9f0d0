"""The HTTP/1.x seam: today a clear refusal, later the AWS wire protocols.

The listener hands a connection here when its first bytes are an HTTP/1.x
request line rather than the HTTP/2 preface. For now it answers ``505 HTTP
Version Not Supported`` in plain text and closes; an HTTP/1.1 server (h11)
serving the same ``route`` replaces ``serve_http1`` when the AWS codecs come.
"""

from __future__ import annotations

import trio

from .metrics import ServerMetrics

MESSAGE = (
    b"This server speaks HTTP/2 only (h2c with prior knowledge, or TLS with ALPN h2).\n"
    b"Use an HTTP/2 client, e.g. `curl --http2-prior-knowledge`.\n"
)
RESPONSE = (
    b"HTTP/1.1 505 HTTP Version Not Supported\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: " + str(len(MESSAGE)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + MESSAGE
)
METHODS = (b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE")


def looks_like_http1(data: bytes) -> bool:
    """True if ``data`` starts like an HTTP/1.x request line (``METHOD SP``)."""
    method, sep, _ = data.partition(b" ")
    return bool(sep) and method in METHODS


async def serve_http1(stream: trio.abc.Stream, metrics: ServerMetrics, initial_data: bytes) -> None:
    """Answer an HTTP/1.x client that HTTP/2 is required, then close."""
    metrics.bytes_out += len(RESPONSE)
    await stream.send_all(RESPONSE)
