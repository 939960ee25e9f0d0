"""``SocketReader``: waiting first and reading once, with the errors of trio's own streams."""

from __future__ import annotations

import socket
import struct

import pytest
import trio
import trio.testing

from broker.protocol.receiving import SocketReader


async def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


async def test_it_reads_what_arrives_then_the_end() -> None:
    ours, peer = await socket_pair()
    reader = SocketReader(ours, 4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.send_all, b"abcdef")
        with trio.fail_after(5):
            assert await reader.receive() == b"abcd"  # at most ``size``
            assert await reader.receive() == b"ef"
    await peer.aclose()
    with trio.fail_after(5):
        assert await reader.receive() == b""
    await ours.aclose()


async def test_a_reset_is_a_broken_resource() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = trio.socket.socket()
    await client.connect(listener.getsockname())
    accepted, _ = await listener.accept()
    # Closing with a zero linger sends RST instead of FIN.
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    reader = SocketReader(trio.SocketStream(accepted), 1024)
    with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
        await reader.receive()
    accepted.close()
    listener.close()


async def test_a_socket_closed_by_another_task_is_a_closed_resource() -> None:
    ours, peer = await socket_pair()
    reader = SocketReader(ours, 1024)
    async with trio.open_nursery() as nursery:

        async def close_soon() -> None:
            await trio.testing.wait_all_tasks_blocked()
            await ours.aclose()

        nursery.start_soon(close_soon)
        with trio.fail_after(5), pytest.raises(trio.ClosedResourceError):
            await reader.receive()
    with pytest.raises(trio.ClosedResourceError):
        await reader.receive()  # and it stays so
    await peer.aclose()


async def test_another_stream_is_read_with_its_own_receive_some() -> None:
    stream = trio.testing.MemoryReceiveStream()
    stream.put_data(b"hello")
    assert await SocketReader(stream, 1024).receive() == b"hello"
