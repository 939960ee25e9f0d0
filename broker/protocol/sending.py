"""``write_now``: what a plain socket takes at once, written without a trio checkpoint.

``trio.SocketStream.send_all`` passes through the scheduler before it writes,
so bytes wait behind every task that is ready to run (about 1 ms at the ingest
peak, docs/performance-notes.md). The broker's answers and pushes
(``H2ServerConnection.send_soon``) and the client's requests
(``_Connection.flush``) write with this when no send is in progress, and hand
what the socket refused to ``send_all``, which waits for room.
"""

from __future__ import annotations

import os

import trio


def write_now(sock: trio.socket.SocketType | None, data: bytes) -> int:
    """Write ``data`` as far as ``sock`` takes it now; how many bytes it took.

    0 when there is no plain socket (TLS), it is closed, full or broken: the
    caller's ``send_all`` then waits for room or raises the stream's error.
    The descriptor is asked each time, so a closed socket's number, which the
    system may have given to another file, is never written to.
    """
    fd = sock.fileno() if sock is not None else -1
    if fd < 0:
        return 0
    try:
        return os.write(fd, data)
    except OSError:
        return 0
