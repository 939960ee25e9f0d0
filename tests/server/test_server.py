"""End-to-end tests of the HTTP/2 server against a real listener on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import h2.connection
import msgpack
import pytest
import trio

from broker.client import Client
from broker.errors import (
    InternalFailureError,
    SerializationError,
    UnknownOperationError,
    ValidationError,
)
from broker.protocol.codec import CONTENT_TYPE

from .harness import Running, running_server

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


async def read_until_closed(stream: trio.SocketStream, limit: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (fails after ``limit``)."""
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


def frame_types(data: bytes) -> list[int]:
    types = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        types.append(data[3])
        data = data[9 + length :]
    return types


GOAWAY = 0x7


async def raw_post(
    client: Client, path: str, body: bytes, method: str = "POST"
) -> tuple[int, bytes]:
    transport = client._transport
    assert transport is not None
    raw = await transport.request(path, body, CONTENT_TYPE, method)
    return raw.status, raw.body


async def test_concurrent_calls_share_one_connection(running: Running) -> None:
    results: dict[int, object] = {}
    async with Client(running.endpoint) as client:

        async def one(i: int) -> None:
            results[i] = await client.call("TestEcho", {"N": i, "Pad": b"x" * (i * 100)})

        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(one, i)
    assert {i: r["Echo"]["N"] for i, r in results.items()} == {i: i for i in range(100)}  # type: ignore[index]
    assert running.server.metrics.connections_total == 1


async def test_large_bodies_both_ways_obey_flow_control(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        running_server(tmp_path, monkeypatch, max_body_bytes=32 << 20) as running,
        Client(running.endpoint) as client,
    ):
        payload = bytes(range(256)) * (40 << 10)  # 10 MiB: past every window
        reply = await client.call("TestEcho", {"Data": payload})
        assert reply["Echo"]["Data"] == payload
        big = await client.call("TestBig", {"Size": 20 << 20})
        assert len(big["Data"]) == 20 << 20


async def test_garbage_and_bad_preface_close_only_that_connection(running: Running) -> None:
    async with Client(running.endpoint) as client:
        assert (await client.call("TestEcho", {"A": 1}))["Echo"] == {"A": 1}
        for junk in (b"\x00\x01\x02garbage\xff" * 10, PREFACE[:10] + b"XXXXXXXXXXXXXXXXXXXX"):
            stream = await trio.open_tcp_stream("127.0.0.1", running.port)
            await stream.send_all(junk)
            assert await read_until_closed(stream) == b""
            await stream.aclose()
        assert (await client.call("TestEcho", {"A": 2}))["Echo"] == {"A": 2}


async def test_protocol_violation_gets_goaway(running: Running) -> None:
    async with Client(running.endpoint) as client:
        await client.call("TestEcho", {})
        stream = await trio.open_tcp_stream("127.0.0.1", running.port)
        settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        data_on_stream_zero = b"\x00\x00\x04\x00\x00\x00\x00\x00\x00abcd"
        await stream.send_all(PREFACE + settings + data_on_stream_zero)
        received = await read_until_closed(stream)
        assert GOAWAY in frame_types(received)
        await stream.aclose()
        assert (await client.call("TestEcho", {"Still": "up"}))["Echo"] == {"Still": "up"}


async def test_oversized_body_is_refused_by_name(running: Running) -> None:
    async with Client(running.endpoint) as client:
        with pytest.raises(ValidationError) as caught:
            await client.call("TestEcho", {"Data": b"z" * (1 << 20)})
        assert "exceeds" in caught.value.message
        status, _ = await raw_post(client, "/v1/TestEcho", b"z" * (300 * 1024))
        assert status == 413
        assert (await client.call("TestEcho", {"Ok": 1}))["Echo"] == {"Ok": 1}
    assert running.server.metrics.connections_total == 1


async def test_malformed_bodies_get_named_errors(running: Running) -> None:
    async with Client(running.endpoint) as client:
        for body in (b"\xc1", b"\x92\x01", msgpack.packb([1, 2]), b"\x81\xa1"):
            status, answer = await raw_post(client, "/v1/TestEcho", body)
            assert status == 400
            assert msgpack.unpackb(answer)["__type"] == SerializationError.wire_name
        with pytest.raises(UnknownOperationError):
            await client.call("NoSuchOperation", {})
        assert (await client.call("TestEcho", {}))["Echo"] == {}


async def test_handler_crash_is_a_500_and_the_connection_stays(running: Running) -> None:
    async with Client(running.endpoint) as client:
        with pytest.raises(InternalFailureError):
            await client.call("TestBoom", {})
        assert (await client.call("TestEcho", {}))["Echo"] == {}
    assert running.server.metrics.connections_total == 1


async def test_paths_methods_healthz_and_metrics(running: Running) -> None:
    async with Client(running.endpoint) as client:
        await client.call("TestEcho", {})
        with pytest.raises(SerializationError):
            await raw_post_error(client)
        status, body = await raw_post(client, "/healthz", b"", "GET")
        assert (status, body) == (200, b"ok\n")
        status, body = await raw_post(client, "/v1/TestEcho", b"", "GET")
        assert status == 405
        assert msgpack.unpackb(body)["__type"] == "MethodNotAllowedException"
        status, body = await raw_post(client, "/nowhere", b"")
        assert status == 404
        assert msgpack.unpackb(body)["__type"] == "NotFoundException"
        status, body = await raw_post(client, "/metrics", b"", "GET")
        text = body.decode()
    assert status == 200
    assert 'shardline_requests_total{operation="TestEcho",outcome="ok"} 1' in text
    assert 'outcome="SerializationException"} 1' in text
    assert "shardline_connections_open 1" in text
    assert "shardline_received_bytes_total" in text


async def raw_post_error(client: Client) -> None:
    from broker.client.client import raise_for_response

    status, body = await raw_post(client, "/v1/TestEcho", b"\xc1")
    raise_for_response(status, body)


async def test_idle_connection_is_closed_with_goaway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_server(tmp_path, monkeypatch, idle_timeout_s=0.3) as running:
        stream = await trio.open_tcp_stream("127.0.0.1", running.port)
        client = h2.connection.H2Connection()
        client.initiate_connection()
        await stream.send_all(client.data_to_send())
        received = await read_until_closed(stream, limit=5.0)
        assert GOAWAY in frame_types(received)


async def test_graceful_shutdown_finishes_in_flight_request(running: Running) -> None:
    answers: list[object] = []
    async with Client(running.endpoint) as client:
        async with trio.open_nursery() as nursery:

            async def slow_call() -> None:
                answers.append(await client.call("TestSlow", {}))

            nursery.start_soon(slow_call)
            with trio.fail_after(5):
                await running.gate.entered.wait()
            running.server.shutdown()
            running.gate.release.set()
        with trio.fail_after(5):
            await running.stopped.wait()
    assert answers == [{"Slow": True}]
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", running.port)
