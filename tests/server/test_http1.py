"""HTTP/1.1 on the broker's port: a real server, httpx and bare sockets.

httpx is the ordinary client (keep-alive, the native operations, TLS);
``RawH1`` sends exactly the bytes a test gives (pipelining, ``Expect``,
malformed heads, a reader that stops reading) and parses the answers with an
h11 client connection.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import h11
import httpx
import msgpack
import pytest
import trio
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.client import Client
from broker.fanout.events import EventDecoder, RecordsEvent
from broker.protocol.codec import CONTENT_TYPE, decode_body, encode_body
from broker.server.listener import server_ssl_context
from tests.e2e.harness import Served, raw_post, serve

S0 = "shardId-000000000000"
MSGPACK = {"content-type": CONTENT_TYPE}


def request_bytes(
    method: str,
    target: str,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    *,
    length: int | None = None,
) -> bytes:
    """One request as it goes on the wire (``content-length`` unless a header frames it)."""
    lines = [f"{method} {target} HTTP/1.1", "host: 127.0.0.1"]
    names = {name.lower() for name, _ in headers}
    if "transfer-encoding" not in names and (body or method == "POST" or length is not None):
        lines.append(f"content-length: {len(body) if length is None else length}")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class RawH1:
    """A bare HTTP/1.1 client socket; answers are parsed by an h11 client connection.

    h11 parses a response only after it saw a request go out, so each read of
    a response first walks the parser through a request of the same method
    (its bytes are thrown away: what goes on the wire is what ``send`` sent).
    """

    def __init__(self, stream: trio.SocketStream, limit: float = 10.0) -> None:
        self.stream = stream
        self.limit = limit
        self.parser = h11.Connection(h11.CLIENT)
        self.eof = False

    @classmethod
    async def open(cls, port: int, *, receive_buffer: int | None = None) -> RawH1:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connecting: it sets the window scale
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        await sock.connect(("127.0.0.1", port))
        return cls(trio.SocketStream(sock))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    def expect(self, method: str = "GET") -> None:
        """Have the parser wait for the answer to a ``method`` request."""
        if self.parser.our_state is h11.DONE and self.parser.their_state is h11.DONE:
            self.parser.start_next_cycle()
        self.parser.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
        self.parser.send(h11.EndOfMessage())

    async def event(self) -> h11.Event:
        """The next parsed event, reading the socket as needed."""
        with trio.fail_after(self.limit):
            while True:
                event = self.parser.next_event()
                if isinstance(event, h11.Event):
                    return event
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    data = b""
                self.eof = self.eof or not data
                self.parser.receive_data(data)

    async def head(self, method: str = "GET") -> h11.Response | h11.InformationalResponse:
        self.expect(method)
        event = await self.event()
        assert isinstance(event, h11.Response | h11.InformationalResponse), event
        return event

    async def rest(self, head: h11.Response) -> tuple[int, dict[str, str], bytes]:
        """The body after ``head``: status, headers (lower-case names), whole body."""
        body = b""
        while True:
            event = await self.event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return head.status_code, headers_of(head), body
            else:
                raise AssertionError(f"unexpected {event!r}")

    async def response(self, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        head = await self.head(method)
        assert isinstance(head, h11.Response), head
        return await self.rest(head)

    async def closed(self) -> bool:
        """True once the server closed the connection (reads and drops anything before)."""
        with trio.fail_after(self.limit):
            while True:
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return True
                if not data:
                    return True

    async def aclose(self) -> None:
        await self.stream.aclose()


def headers_of(head: h11.Response | h11.InformationalResponse) -> dict[str, str]:
    return {name.decode(): value.decode() for name, value in head.headers}


def error_type(body: bytes) -> str:
    answer = decode_body(body)
    assert isinstance(answer, dict)
    return str(answer["__type"])


async def post(http: httpx.AsyncClient, operation: str, request: dict[str, Any]) -> Any:
    answer = await http.post(f"/v1/{operation}", content=encode_body(request), headers=MSGPACK)
    assert answer.status_code == 200, (answer.status_code, decode_body(answer.content))
    assert answer.headers["content-type"] == CONTENT_TYPE
    return decode_body(answer.content)


async def healthy(port: int) -> bool:
    """A new connection is served (the server survived whatever came before)."""
    raw = await RawH1.open(port)
    await raw.send(request_bytes("GET", "/healthz"))
    status, _, body = await raw.response()
    await raw.aclose()
    return status == 200 and body == b"ok\n"


@pytest.fixture
async def served(tmp_path: Path) -> Any:
    async with serve(tmp_path / "data", max_body_bytes=64 * 1024) as running:
        yield running


# -- the operations ------------------------------------------------------------


async def test_native_operations_answer_as_over_http2(served: Served) -> None:
    before = served.server.metrics.connections_total
    async with httpx.AsyncClient(base_url=served.endpoint) as http:
        await post(http, "CreateStream", {"StreamName": "s", "ShardCount": 1})
        put = await post(
            http,
            "PutRecords",
            {
                "StreamName": "s",
                "Records": [{"Data": b"r%d" % i, "PartitionKey": "k"} for i in range(5)],
            },
        )
        assert put["FailedRecordCount"] == 0
        iterator = await post(
            http,
            "GetShardIterator",
            {"StreamName": "s", "ShardId": S0, "ShardIteratorType": "TRIM_HORIZON"},
        )
        page = await post(http, "GetRecords", {"ShardIterator": iterator["ShardIterator"]})
        assert [r["Data"] for r in page["Records"]] == [b"r%d" % i for i in range(5)]
        assert [r["SequenceNumber"] for r in page["Records"]] == [
            r["SequenceNumber"] for r in put["Records"]
        ]
        over_h1 = await http.post(
            "/v1/DescribeStream", content=encode_body({"StreamName": "s"}), headers=MSGPACK
        )
        missing_h1 = await http.post(
            "/v1/DescribeStream", content=encode_body({"StreamName": "nope"}), headers=MSGPACK
        )
    # keep-alive: every request above went over one connection
    assert served.server.metrics.connections_total == before + 1
    async with Client(served.endpoint) as client:
        over_h2 = await raw_post(client, "/v1/DescribeStream", encode_body({"StreamName": "s"}))
        missing_h2 = await raw_post(
            client, "/v1/DescribeStream", encode_body({"StreamName": "nope"})
        )
        records = (await client.get_records(iterator["ShardIterator"])).records
    assert (over_h1.status_code, over_h1.content) == over_h2
    assert (missing_h1.status_code, missing_h1.content) == missing_h2
    assert missing_h1.status_code == 400
    assert error_type(missing_h1.content) == "ResourceNotFoundException"
    assert [r.sequence_number for r in records] == [r["SequenceNumber"] for r in page["Records"]]


async def test_endpoints_not_found_and_wrong_method(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.endpoint) as http:
        health = await http.get("/healthz")
        assert (health.status_code, health.text) == (200, "ok\n")
        assert health.headers["content-type"].startswith("text/plain")
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        assert "shardline_connections_open 1" in metrics.text
        nowhere = await http.get("/nowhere")
        assert nowhere.status_code == 404
        assert error_type(nowhere.content) == "NotFoundException"
        wrong = await http.get("/v1/ListStreams")
        assert wrong.status_code == 405
        assert error_type(wrong.content) == "MethodNotAllowedException"
        wrong = await http.post("/healthz")
        assert wrong.status_code == 405


async def test_head_has_the_length_and_no_body(served: Served) -> None:
    raw = await RawH1.open(served.port)
    await raw.send(request_bytes("HEAD", "/healthz") + request_bytes("GET", "/healthz"))
    status, headers, body = await raw.response("HEAD")
    assert (status, headers["content-length"], body) == (200, "3", b"")
    # the next answer starts right after the head: no body bytes came in between
    assert await raw.response() == (200, headers, b"ok\n")
    await raw.aclose()


async def test_socket_bytes_are_counted(served: Served) -> None:
    metrics = served.server.metrics
    bytes_in, bytes_out = metrics.bytes_in, metrics.bytes_out
    request = request_bytes("GET", "/healthz")
    raw = await RawH1.open(served.port)
    await raw.send(request)
    await raw.response()
    assert metrics.bytes_in - bytes_in == len(request)
    # status line, content-type, content-length and the body at least
    assert metrics.bytes_out - bytes_out > len(b"HTTP/1.1 200 OK\r\n\r\nok\n")
    await raw.aclose()


# -- keep-alive, pipelining, bodies ----------------------------------------------


async def test_pipelined_requests_are_answered_in_order(served: Served) -> None:
    raw = await RawH1.open(served.port)
    create = encode_body({"StreamName": "p", "ShardCount": 2})
    await raw.send(b"PO")  # too short to tell HTTP/1.1 from anything: the server waits
    await raw.send(
        request_bytes("POST", "/v1/CreateStream", create, [("content-type", CONTENT_TYPE)])[2:]
        + request_bytes("POST", "/v1/ListStreams", b"\x80")
        + request_bytes("GET", "/nowhere")
    )
    status, _, body = await raw.response("POST")
    assert (status, decode_body(body)) == (200, {})
    status, _, body = await raw.response("POST")
    assert status == 200 and decode_body(body)["StreamNames"] == ["p"]
    status, _, body = await raw.response()
    assert status == 404
    # and the connection still serves, one request at a time
    for _ in range(3):
        await raw.send(request_bytes("GET", "/healthz"))
        assert (await raw.response())[2] == b"ok\n"
    await raw.aclose()


async def test_chunked_request_body(served: Served) -> None:
    body = encode_body({"StreamName": "c", "ShardCount": 1})
    half = len(body) // 2
    chunked = b"".join(
        b"%x\r\n%s\r\n" % (len(piece), piece) for piece in (body[:half], body[half:])
    )
    raw = await RawH1.open(served.port)
    head = request_bytes("POST", "/v1/CreateStream", headers=[("transfer-encoding", "chunked")])
    await raw.send(head + chunked[:5])
    await raw.send(chunked[5:] + b"0\r\n\r\n")
    status, _, answer = await raw.response("POST")
    assert (status, decode_body(answer)) == (200, {})
    await raw.send(request_bytes("POST", "/v1/ListStreams", b"\x80"))
    status, _, answer = await raw.response("POST")
    assert decode_body(answer)["StreamNames"] == ["c"]
    await raw.aclose()


async def test_expect_100_continue(served: Served) -> None:
    body = encode_body({"StreamName": "e", "ShardCount": 1})
    raw = await RawH1.open(served.port)
    await raw.send(
        request_bytes(
            "POST", "/v1/CreateStream", headers=[("expect", "100-continue")], length=len(body)
        )
    )
    interim = await raw.head("POST")
    assert isinstance(interim, h11.InformationalResponse) and interim.status_code == 100
    await raw.send(body)
    event = await raw.event()
    assert isinstance(event, h11.Response)
    status, _, answer = await raw.rest(event)
    assert (status, decode_body(answer)) == (200, {})
    # a body the server would refuse is refused before it is sent: no 100 first
    await raw.send(
        request_bytes(
            "POST", "/v1/PutRecords", headers=[("expect", "100-continue")], length=1 << 20
        )
    )
    head = await raw.head("POST")
    assert head.status_code == 413
    assert isinstance(head, h11.Response)
    status, headers, answer = await raw.rest(head)
    assert error_type(answer) == "ValidationException"
    assert headers["connection"] == "close"
    assert await raw.closed()


# -- limits and malformed input ---------------------------------------------------


async def test_declared_body_over_the_limit_is_refused_unread(served: Served) -> None:
    raw = await RawH1.open(served.port)
    await raw.send(request_bytes("POST", "/v1/PutRecords", b"x" * 1000, length=10 << 20))
    status, headers, body = await raw.response("POST")
    assert status == 413 and headers["connection"] == "close"
    assert error_type(body) == "ValidationException"
    assert b"exceeds the limit of 65536 bytes" in body
    assert await raw.closed()
    assert await healthy(served.port)
    assert served.server.metrics.requests[("PutRecords", "ValidationException")] == 1


async def test_body_growing_over_the_limit_is_refused(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.endpoint) as http:

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"z" * 10_000  # 100 kB in all, chunked: the length is not declared

        answer = await http.post("/v1/PutRecords", content=chunks(), headers=MSGPACK)
        assert answer.status_code == 413
        assert error_type(answer.content) == "ValidationException"
        assert answer.headers["connection"] == "close"
        # a whole body over the limit, declared: also 413, and the next request is served
        answer = await http.post("/v1/PutRecords", content=b"z" * 100_000, headers=MSGPACK)
        assert answer.status_code == 413
        assert (await http.get("/healthz")).status_code == 200


async def test_headers_over_the_limit(tmp_path: Path) -> None:
    async with serve(tmp_path / "data", max_header_bytes=4096) as served:
        # a complete head over the limit
        raw = await RawH1.open(served.port)
        await raw.send(request_bytes("GET", "/healthz", headers=[("x-big", "a" * 5000)]))
        status, headers, body = await raw.response()
        assert status == 431 and headers["connection"] == "close"
        assert error_type(body) == "ValidationException"
        assert await raw.closed()
        # a head that never ends: refused once it is over the limit
        raw = await RawH1.open(served.port)
        await raw.send(b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + b"x-more: aaaaaaaa\r\n" * 400)
        status, _, body = await raw.response()
        assert status == 431
        assert await raw.closed()
        # many small headers are within it
        raw = await RawH1.open(served.port)
        await raw.send(request_bytes("GET", "/healthz", headers=[("x-a", "b")] * 20))
        assert (await raw.response())[0] == 200
        await raw.aclose()


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nno colon here\r\n\r\n",
        b"GET nonsense\r\n\r\n",
        b"POST /v1/ListStreams HTTP/1.1\r\nhost: x\r\ncontent-length: nine\r\n\r\n",
        b"POST /v1/ListStreams HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"GET /healthz HTTP/1.1\r\n\r\n",  # HTTP/1.1 requires host
    ],
)
async def test_malformed_requests_get_400_and_a_close(served: Served, garbage: bytes) -> None:
    raw = await RawH1.open(served.port)
    await raw.send(garbage)
    method = garbage.split(b" ", 1)[0].decode()
    status, headers, body = await raw.response(method)
    assert status == 400 and headers["connection"] == "close"
    assert error_type(body) == "ValidationException"
    assert await raw.closed()
    assert await healthy(served.port)


async def test_idle_connections_are_closed(tmp_path: Path) -> None:
    async with serve(tmp_path / "data", idle_timeout_s=0.3) as served:
        silent = await RawH1.open(served.port)
        assert await silent.closed()  # never said a word
        kept = await RawH1.open(served.port)
        await kept.send(request_bytes("GET", "/healthz"))
        assert (await kept.response())[0] == 200
        assert await kept.closed()  # idle after one request
        stalled = await RawH1.open(served.port)
        await stalled.send(request_bytes("POST", "/v1/ListStreams", length=10))
        assert await stalled.closed()  # a body that stops coming


# -- streamed responses ------------------------------------------------------------


async def register(client: Client, stream: str, *names: str) -> list[str]:
    await client.create_stream(stream, 1)
    arn = (await client.describe_stream_summary(stream)).stream_arn
    return [(await client.register_stream_consumer(arn, name)).consumer_arn for name in names]


async def subscribe(port: int, consumer: str, **socket_options: Any) -> tuple[RawH1, h11.Response]:
    raw = await RawH1.open(port, **socket_options)
    body = msgpack.packb(
        {"ConsumerARN": consumer, "ShardId": S0, "StartingPosition": {"Type": "TRIM_HORIZON"}}
    )
    await raw.send(
        request_bytes("POST", "/v1/SubscribeToShard", body, [("content-type", CONTENT_TYPE)])
    )
    head = await raw.head("POST")
    assert isinstance(head, h11.Response) and head.status_code == 200
    return raw, head


async def read_records(raw: RawH1, count: int) -> list[bytes]:
    """Decode push events from the chunked body until ``count`` records came."""
    decoder = EventDecoder()
    data: list[bytes] = []
    while len(data) < count:
        event = await raw.event()
        assert isinstance(event, h11.Data), event
        for pushed in decoder.feed(event.data):
            if isinstance(pushed, RecordsEvent):
                data += [record[2] for record in pushed.records]
    return data


async def test_subscribe_to_shard_streams_chunked_events(served: Served) -> None:
    async with Client(served.endpoint) as client:
        [consumer] = await register(client, "s", "reader")
        await client.put_records("s", [{"Data": b"before", "PartitionKey": "k"}])
        raw, head = await subscribe(served.port, consumer)
        assert headers_of(head)["transfer-encoding"] == "chunked"
        assert "content-length" not in headers_of(head)
        assert await read_records(raw, 1) == [b"before"]
        await client.put_records(
            "s", [{"Data": b"after%d" % i, "PartitionKey": "k"} for i in range(3)]
        )
        assert await read_records(raw, 3) == [b"after0", b"after1", b"after2"]
        await raw.aclose()


async def test_a_reader_that_stops_stalls_only_itself(tmp_path: Path) -> None:
    record = 256 * 1024
    batches, per_batch = 4, 16  # 16 MiB: more than the stalled reader's socket buffers hold
    async with (
        serve(tmp_path / "data", max_body_bytes=8 << 20) as served,
        Client(served.endpoint) as client,
    ):
        stalled_arn, reader_arn = await register(client, "s", "stalled", "reader")
        stalled, _ = await subscribe(served.port, stalled_arn, receive_buffer=4096)
        reader, _ = await subscribe(served.port, reader_arn)
        total = batches * per_batch
        for b in range(batches):
            batch = [
                {"Data": bytes([b * per_batch + i]) * record, "PartitionKey": "k"}
                for i in range(per_batch)
            ]
            await client.put_records("s", batch)
        got = await read_records(reader, total)
        assert [d[:1] for d in got] == [bytes([i]) for i in range(total)]
        hub = served.broker.extras["fanout"]
        [held] = [s for s in hub.active.values() if s.key[0] == stalled_arn]
        assert held.position <= total  # its socket is full: it has not sent every batch
        # reading again, it gets everything: the stall was flow control, not loss
        got = await read_records(stalled, total)
        assert [d[:1] for d in got] == [bytes([i]) for i in range(total)]
        await stalled.aclose()
        await reader.aclose()


# -- shutdown ------------------------------------------------------------------------


async def test_shutdown_answers_the_request_in_flight_and_closes_idle_ones(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path / "data", idle_timeout_s=60, shutdown_timeout_s=10) as served:
        idle = await RawH1.open(served.port)
        await idle.send(request_bytes("GET", "/healthz"))
        assert (await idle.response())[0] == 200
        busy = await RawH1.open(served.port)
        await busy.send(
            request_bytes("POST", "/v1/ListStreams", headers=[("expect", "100-continue")], length=1)
        )
        interim = await busy.head("POST")
        assert interim.status_code == 100  # the server is reading this request's body
        served.server.shutdown()
        assert await idle.closed()  # at once, not after the idle timeout
        await busy.send(b"\x80")
        event = await busy.event()
        assert isinstance(event, h11.Response)
        status, headers, body = await busy.rest(event)
        assert status == 200 and decode_body(body)["StreamNames"] == []
        assert headers["connection"] == "close"
        assert await busy.closed()
        with trio.fail_after(5):
            await served.stopped.wait()


# -- TLS ------------------------------------------------------------------------------


async def test_http1_over_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    pem = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with serve(
        tmp_path / "data", ssl_context=server_ssl_context(str(pem), str(pem))
    ) as served:
        async with httpx.AsyncClient(base_url=served.endpoint, verify=client_context) as http:
            answer = await http.get("/healthz")
            assert (answer.status_code, answer.http_version, answer.text) == (
                200,
                "HTTP/1.1",
                "ok\n",
            )
        for offered, chosen in ((["http/1.1"], "http/1.1"), (["h2", "http/1.1"], "h2")):
            client_context.set_alpn_protocols(offered)
            tls = trio.SSLStream(
                await trio.open_tcp_stream("127.0.0.1", served.port),
                client_context,
                server_hostname="127.0.0.1",
            )
            await tls.do_handshake()
            assert tls.selected_alpn_protocol() == chosen
            await tls.aclose()


# -- fuzz -------------------------------------------------------------------------------


@pytest.fixture
def threaded_server(tmp_path: Path) -> Iterator[Served]:
    """A server in its own thread and trio run: hypothesis runs each example in a new one."""
    started: queue.Queue[tuple[Served, trio.lowlevel.TrioToken, trio.CancelScope]] = queue.Queue()

    async def main() -> None:
        with trio.CancelScope() as scope:
            async with serve(tmp_path / "data", max_body_bytes=64 * 1024) as running:
                started.put((running, trio.lowlevel.current_trio_token(), scope))
                await trio.sleep_forever()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    running, token, scope = started.get(timeout=10)
    yield running
    trio.from_thread.run_sync(scope.cancel, trio_token=token)
    thread.join(timeout=10)


heads = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"host: x",
                b"content-length: 3",
                b"content-length: -1",
                b"transfer-encoding: chunked",
                b"transfer-encoding: gzip",
                b"expect: 100-continue",
                b"connection: close",
                b": empty",
                b"x" * 200,
            ]
        ),
        st.binary(max_size=40),
    ),
    max_size=6,
)


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from([b"GET", b"POST", b"HEAD"]),
    target=st.sampled_from([b"/healthz", b"/v1/ListStreams", b"*", b""]) | st.binary(max_size=20),
    lines=heads,
    tail=st.binary(max_size=64),
)
async def test_random_heads_never_kill_the_server(
    threaded_server: Served, method: bytes, target: bytes, lines: list[bytes], tail: bytes
) -> None:
    data = b"\r\n".join([method + b" " + target + b" HTTP/1.1", *lines]) + b"\r\n\r\n" + tail
    raw = await RawH1.open(threaded_server.port)
    await raw.send(data)
    await raw.stream.send_eof()
    answer = b""
    with trio.fail_after(10), contextlib.suppress(trio.BrokenResourceError):
        while chunk := await raw.stream.receive_some(65536):
            answer += chunk
    await raw.aclose()
    if answer:
        assert answer.startswith(b"HTTP/1.1 "), answer[:100]
        assert not answer.startswith(b"HTTP/1.1 500"), answer[:200]
    assert await healthy(threaded_server.port)
