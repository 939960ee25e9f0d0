"""The server's limits against a real listener: connections, header lists, request fields.

* ``max_connections``: a connection past the limit is closed at once, before
  a byte is read or written; the open ones keep working and a freed slot is
  taken by the next connection.
* ``max_header_bytes`` (advertised as SETTINGS_MAX_HEADER_LIST_SIZE): a
  request over it is answered 431 and the connection stays; far past it
  (HPACK bomb territory) the connection ends with GOAWAY ENHANCE_YOUR_CALM.
  Neither touches another connection.
* Request fields over Kinesis's constraints get a named error whose message
  says which field, what was sent and what is allowed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
import trio.testing
from h2.errors import ErrorCodes

from broker.client import Client
from broker.client.transport import ConnectionLostError
from broker.errors import ShardlineError
from broker.server.h2_connection import HEADER_DECODE_FACTOR

from .harness import RawH2, Running, read_until_closed, running_server

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
S0 = "shardId-000000000000"


async def healthz(connection: RawH2, **options: Any) -> tuple[int, bytes]:
    return await connection.response(await connection.request("GET", "/healthz", **options))


# -- max_connections -------------------------------------------------------------


async def test_connections_past_the_limit_are_closed_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_server(tmp_path, monkeypatch, max_connections=2) as running:
        metrics = running.server.metrics
        first = await RawH2.open(running.port)
        second = await RawH2.open(running.port)
        assert metrics.connections_open == 2

        # Refused: closed before the server reads or writes a byte (no SETTINGS, no GOAWAY).
        refused = await trio.open_tcp_stream("127.0.0.1", running.port)
        await refused.send_all(PREFACE)
        assert await read_until_closed(refused) == b""
        await refused.aclose()
        # What a Client user sees: a retriable ConnectionLostError, without waiting.
        async with Client(running.endpoint) as client:
            with trio.fail_after(5), pytest.raises(ConnectionLostError) as caught:
                await client.call("TestEcho", {})
        assert caught.value.retriable
        assert (metrics.connections_refused, metrics.connections_total) == (2, 2)

        # The connections already open are untouched.
        assert await healthz(first) == (200, b"ok\n")
        assert await healthz(second) == (200, b"ok\n")
        assert first.terminated() is None and second.terminated() is None

        # Closing one frees its slot once the server has seen the close.
        await first.aclose()
        with trio.fail_after(5):
            await trio.testing.wait_all_tasks_blocked()
        assert metrics.connections_open == 1
        third = await RawH2.open(running.port)
        assert await healthz(third) == (200, b"ok\n")
        assert await healthz(second) == (200, b"ok\n")
        assert (metrics.connections_open, metrics.connections_total) == (2, 3)
        assert metrics.connections_refused == 2
        await second.aclose()
        await third.aclose()


# -- max_header_bytes ---------------------------------------------------------------


def header_list_size(headers: list[tuple[bytes, bytes]]) -> int:
    """RFC 9113 section 6.5.2: name and value octets plus 32 per field."""
    return sum(32 + len(name) + len(value) for name, value in headers)


def padded_to(size: int, method: str, path: str) -> list[tuple[bytes, bytes]]:
    """An ``x-pad`` header that brings the request's header list to exactly ``size``."""
    base = header_list_size(RawH2.request_headers(method, path, [(b"x-pad", b"")]))
    pad = [(b"x-pad", b"a" * (size - base))]
    assert header_list_size(RawH2.request_headers(method, path, pad)) == size
    return pad


async def slow_call_on_another_connection(
    running: Running, nursery: trio.Nursery, client: Client, answers: list[object]
) -> None:
    async def call() -> None:
        answers.append(await client.call("TestSlow", {}))

    nursery.start_soon(call)
    with trio.fail_after(5):
        await running.gate.entered.wait()


async def test_header_list_over_the_limit_is_answered_431_and_the_connection_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 4096
    answers: list[object] = []
    async with (
        running_server(tmp_path, monkeypatch, max_header_bytes=limit) as running,
        Client(running.endpoint) as other,
        trio.open_nursery() as nursery,
    ):
        await slow_call_on_another_connection(running, nursery, other, answers)
        connection = await RawH2.open(running.port)
        assert connection.h2.remote_settings.max_header_list_size == limit

        body = msgpack.packb({"A": 1})
        over = padded_to(limit + 1, "POST", "/v1/TestEcho")
        stream_id = await connection.request("POST", "/v1/TestEcho", extra_headers=over, body=body)
        status, answer = await connection.response(stream_id)
        assert status == 431
        error = msgpack.unpackb(answer)
        assert error["__type"] == "ValidationException"
        assert f"header list is {limit + 1} bytes" in error["message"]
        assert f"limit of {limit}" in error["message"]

        # The same connection goes on: exactly at the limit is served, one past is not.
        at_limit = padded_to(limit, "GET", "/healthz")
        assert await healthz(connection, extra_headers=at_limit) == (200, b"ok\n")
        status, _ = await healthz(connection, extra_headers=padded_to(limit + 1, "GET", "/healthz"))
        assert status == 431
        assert await healthz(connection) == (200, b"ok\n")
        assert connection.terminated() is None
        assert running.server.metrics.requests[("TestEcho", "ValidationException")] == 1

        running.gate.release.set()
    assert answers == [{"Slow": True}]


async def test_header_list_far_over_the_limit_ends_only_its_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 4096
    answers: list[object] = []
    async with (
        running_server(tmp_path, monkeypatch, max_header_bytes=limit) as running,
        Client(running.endpoint) as other,
        trio.open_nursery() as nursery,
    ):
        await slow_call_on_another_connection(running, nursery, other, answers)
        connection = await RawH2.open(running.port)
        assert await healthz(connection) == (200, b"ok\n")
        bomb = padded_to(HEADER_DECODE_FACTOR * limit + 1, "GET", "/healthz")
        await connection.request("GET", "/healthz", extra_headers=bomb)
        await connection.wait_closed()
        goaway = connection.terminated()
        assert goaway is not None
        assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
        assert goaway.last_stream_id == 1  # the stream already answered; not the bomb

        assert (await other.call("TestEcho", {"Still": "up"}))["Echo"] == {"Still": "up"}
        running.gate.release.set()
    assert answers == [{"Slow": True}]


# -- request fields ------------------------------------------------------------------


# The cases use ``Client.call`` (wire maps in and out), so that they test the
# server's answers and nothing of the client's typed results.


def records(count: int) -> list[dict[str, Any]]:
    return [{"Data": b"x", "PartitionKey": "k"} for _ in range(count)]


def shard_iterator_request(shard_id: str, kind: str) -> dict[str, Any]:
    return {"StreamName": "s", "ShardId": shard_id, "ShardIteratorType": kind}


FieldCase = tuple[Callable[[Client], Awaitable[Any]], str, tuple[str, ...]]

#: call, error name, what the message must say (field, what was sent, what is allowed).
FIELD_CASES: dict[str, FieldCase] = {
    "501 records": (
        lambda c: c.call("PutRecords", {"StreamName": "s", "Records": records(501)}),
        "InvalidArgumentException",
        ("Records", "between 1 and 500", "got 501"),
    ),
    "no records": (
        lambda c: c.call("PutRecords", {"StreamName": "s", "Records": []}),
        "InvalidArgumentException",
        ("Records", "between 1 and 500", "got 0"),
    ),
    "iterator of 513 characters": (
        lambda c: c.call("GetRecords", {"ShardIterator": "A" * 513}),
        "InvalidArgumentException",
        ("ShardIterator", "at most 512 characters", "got 513"),
    ),
    "malformed shard id": (
        lambda c: c.call("GetShardIterator", shard_iterator_request("shard-x", "LATEST")),
        "InvalidArgumentException",
        ("ShardId", "'shard-x'", "'shardId-' followed by 12 digits"),
    ),
    "unknown iterator type": (
        lambda c: c.call("GetShardIterator", shard_iterator_request(S0, "SOMEWHERE")),
        "InvalidArgumentException",
        ("ShardIteratorType", "'SOMEWHERE'", "TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER"),
    ),
}


@pytest.mark.parametrize("case", FIELD_CASES)
async def test_request_fields_past_their_constraints_get_named_errors(
    running: Running, case: str
) -> None:
    call, wire_name, says = FIELD_CASES[case]
    async with Client(running.endpoint) as client:
        await client.call("CreateStream", {"StreamName": "s", "ShardCount": 1})
        with pytest.raises(ShardlineError) as caught:
            await call(client)
        assert caught.value.wire_name == wire_name
        assert caught.value.http_status == 400
        for words in says:
            assert words in caught.value.message
        put = await client.call("PutRecord", {"StreamName": "s", "Data": b"x", "PartitionKey": "k"})
        assert put["ShardId"] == S0


async def test_request_fields_at_their_constraints_pass_the_check(running: Running) -> None:
    async with Client(running.endpoint) as client:
        await client.call("CreateStream", {"StreamName": "s", "ShardCount": 1})
        put = await client.call("PutRecords", {"StreamName": "s", "Records": records(500)})
        assert (put["FailedRecordCount"], len(put["Records"])) == (0, 500)
        # 512 characters pass the length check and fail only as a token we never issued.
        with pytest.raises(ShardlineError) as caught:
            await client.call("GetRecords", {"ShardIterator": "A" * 512})
        assert caught.value.wire_name == "InvalidArgumentException"
        assert "not issued by this broker" in caught.value.message
