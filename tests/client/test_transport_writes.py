"""The client's writes (``_Connection.flush``): at once when the socket takes them, else waiting."""

from __future__ import annotations

import socket

import trio
import trio.testing

from broker.client.transport import _Connection

MIB = 1 << 20


def _pair() -> tuple[_Connection, trio.socket.SocketType]:
    """A client connection over one end of a socket pair, and the other end (not read yet)."""
    ours, theirs = socket.socketpair()
    for sock in (ours, theirs):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    return _Connection(stream, "test", "http"), trio.socket.from_stdlib_socket(theirs)


async def _read(peer: trio.socket.SocketType, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        chunk = await peer.recv(64 * 1024)
        assert chunk, "the connection closed early"
        got += chunk
    return bytes(got)


async def test_a_write_the_socket_takes_is_sent_without_waiting() -> None:
    connection, peer = _pair()
    connection.outbox += b"left by the read loop "
    connection.h2.data_to_send = lambda *_: b"then h2's output"  # type: ignore[method-assign]
    with trio.testing.assert_no_checkpoints():
        await connection.flush()
    assert await _read(peer, 38) == b"left by the read loop then h2's output"


async def test_what_the_socket_does_not_take_waits_for_room_and_keeps_its_order() -> None:
    connection, peer = _pair()
    big = bytes(range(256)) * (MIB // 256)
    outputs = iter([big])
    connection.outbox += b"first"
    connection.h2.data_to_send = lambda *_: next(outputs, b"")  # type: ignore[method-assign]
    done = trio.Event()

    async def flush() -> None:
        await connection.flush()
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flush)
        await trio.testing.wait_all_tasks_blocked()
        # The peer reads nothing yet: the socket took part, the caller waits for room.
        assert not done.is_set()
        assert await _read(peer, 5 + len(big)) == b"first" + big
    assert done.is_set()
    assert connection.outbox == b""
