"""The AWS wire over HTTP/2 (as the Java SDK v2 speaks it): JSON and CBOR bodies, AWS errors."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2
import httpx
import pytest
import trio
import trustme

from broker.protocol import aws
from broker.protocol.eventstream import EventStreamDecoder
from broker.server.listener import server_ssl_context
from tests.e2e.harness import Served, serve

STREAM = "wire"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serve(tmp_path / "data") as running:
        yield running


@pytest.fixture
async def http2(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    # HTTP/2 with prior knowledge on a plain socket (h2c), as the Java SDK's Netty client does.
    async with httpx.AsyncClient(base_url=served.endpoint, http1=False, http2=True) as client:
        yield client


async def call(
    client: httpx.AsyncClient,
    operation: str,
    body: Any,
    *,
    codec: aws.Codec = aws.JSON,
    target: str | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, str], Any]:
    raw = json.dumps(body).encode() if codec is aws.JSON else cbor2.dumps(body)
    response = await client.request(
        method,
        "/",
        content=raw,
        headers={
            "x-amz-target": target or f"Kinesis_20131202.{operation}",
            "content-type": codec.content_type,
        },
    )
    assert response.http_version == "HTTP/2"
    data = response.content
    decoded = None
    if data:
        # Tag-1 timestamps count milliseconds on AWS's CBOR: read them as the numbers they are.
        decoded = (
            json.loads(data)
            if codec is aws.JSON
            else cbor2.loads(data, semantic_decoders={1: lambda value, _immutable: value})
        )
    return response.status_code, dict(response.headers), decoded


async def test_json_operations_answer_with_a_request_id(http2: httpx.AsyncClient) -> None:
    status, headers, body = await call(
        http2, "CreateStream", {"StreamName": STREAM, "ShardCount": 1}
    )
    assert (status, body) == (200, {})
    assert headers["content-type"] == aws.JSON_TYPE
    first_id = headers["x-amzn-requestid"]
    data = base64.b64encode(b"hello").decode()
    status, headers, put = await call(
        http2, "PutRecord", {"StreamName": STREAM, "Data": data, "PartitionKey": "k"}
    )
    assert status == 200 and headers["x-amzn-requestid"] != first_id
    assert put["ShardId"] == "shardId-000000000000"
    status, _, it = await call(
        http2,
        "GetShardIterator",
        {"StreamName": STREAM, "ShardId": put["ShardId"], "ShardIteratorType": "TRIM_HORIZON"},
    )
    status, _, page = await call(http2, "GetRecords", {"ShardIterator": it["ShardIterator"]})
    (record,) = page["Records"]
    assert record["Data"] == data
    assert record["SequenceNumber"] == put["SequenceNumber"]
    assert isinstance(record["ApproximateArrivalTimestamp"], float)


async def test_cbor_operations_carry_bytes_and_milliseconds(http2: httpx.AsyncClient) -> None:
    codec = aws.CBOR
    status, headers, _ = await call(
        http2, "CreateStream", {"StreamName": STREAM, "ShardCount": 1}, codec=codec
    )
    assert status == 200 and headers["content-type"] == aws.CBOR_TYPE
    blobs = [bytes([i]) * (i + 1) for i in range(5)]
    status, _, put = await call(
        http2,
        "PutRecords",
        {"StreamName": STREAM, "Records": [{"Data": b, "PartitionKey": "k"} for b in blobs]},
        codec=codec,
    )
    assert status == 200 and put["FailedRecordCount"] == 0
    _, _, summary = await call(http2, "DescribeStreamSummary", {"StreamName": STREAM}, codec=codec)
    created = summary["StreamDescriptionSummary"]["StreamCreationTimestamp"]
    assert isinstance(created, int) and created > 1_600_000_000_000  # milliseconds
    _, _, it = await call(
        http2,
        "GetShardIterator",
        {
            "StreamName": STREAM,
            "ShardId": "shardId-000000000000",
            "ShardIteratorType": "AT_TIMESTAMP",
            "Timestamp": created,
        },
        codec=codec,
    )
    _, _, page = await call(
        http2, "GetRecords", {"ShardIterator": it["ShardIterator"]}, codec=codec
    )
    assert [r["Data"] for r in page["Records"]] == blobs


async def test_errors_are_aws_error_bodies(http2: httpx.AsyncClient) -> None:
    status, headers, body = await call(http2, "DescribeStreamSummary", {"StreamName": "none"})
    assert status == 400 and headers["x-amzn-requestid"]
    assert body["__type"] == "ResourceNotFoundException" and "none" in body["message"]
    status, _, body = await call(
        http2, "DescribeStreamSummary", {"StreamName": "none"}, codec=aws.CBOR
    )
    assert status == 400 and body["__type"] == "ResourceNotFoundException"


@pytest.mark.parametrize(
    "target", ["Kinesis_20131202.NoSuchThing", "DynamoDB_20120810.GetItem", "garbage"]
)
async def test_an_unknown_target_is_unknown_operation(
    http2: httpx.AsyncClient, target: str
) -> None:
    status, _, body = await call(http2, "", {}, target=target)
    assert status == 400 and body["__type"] == "UnknownOperationException"


async def test_a_body_that_does_not_parse_is_a_serialization_error(
    served: Served, http2: httpx.AsyncClient
) -> None:
    for content_type, raw in ((aws.JSON_TYPE, b"{not json"), (aws.CBOR_TYPE, b"\xff\xff")):
        response = await http2.post(
            "/",
            content=raw,
            headers={"x-amz-target": "Kinesis_20131202.ListStreams", "content-type": content_type},
        )
        assert response.status_code == 400
        decoded = (
            json.loads(response.content)
            if content_type == aws.JSON_TYPE
            else cbor2.loads(response.content)
        )
        assert decoded["__type"] == "SerializationException"
    # The server goes on serving.
    status, _, body = await call(http2, "ListStreams", {})
    assert status == 200 and body["StreamNames"] == []


async def test_operations_answer_post_only(http2: httpx.AsyncClient) -> None:
    status, _, body = await call(http2, "ListStreams", {}, method="PUT")
    assert status == 405 and body["__type"] == "MethodNotAllowedException"


async def test_stream_arn_only_requests(http2: httpx.AsyncClient) -> None:
    await call(http2, "CreateStream", {"StreamName": STREAM, "ShardCount": 2})
    arn = f"arn:aws:kinesis:us-east-1:000000000000:stream/{STREAM}"
    status, _, shards = await call(http2, "ListShards", {"StreamARN": arn})
    assert status == 200 and len(shards["Shards"]) == 2
    status, _, put = await call(
        http2, "PutRecord", {"StreamARN": arn, "Data": "eA==", "PartitionKey": "k"}
    )
    assert status == 200 and put["SequenceNumber"].isdigit()


async def test_subscribe_to_shard_over_http2_is_an_aws_event_stream(
    served: Served, http2: httpx.AsyncClient
) -> None:
    """The Java SDK's way: HTTP/2, CBOR, the event stream with initial-response first."""
    await call(http2, "CreateStream", {"StreamName": STREAM, "ShardCount": 1}, codec=aws.CBOR)
    arn = f"arn:aws:kinesis:us-east-1:000000000000:stream/{STREAM}"
    _, _, registered = await call(
        http2, "RegisterStreamConsumer", {"StreamARN": arn, "ConsumerName": "java"}, codec=aws.CBOR
    )
    blobs = [b"\x00first", b"second\xff"]
    await call(
        http2,
        "PutRecords",
        {"StreamName": STREAM, "Records": [{"Data": b, "PartitionKey": "k"} for b in blobs]},
        codec=aws.CBOR,
    )
    request = {
        "ConsumerARN": registered["Consumer"]["ConsumerARN"],
        "ShardId": "shardId-000000000000",
        "StartingPosition": {"Type": "TRIM_HORIZON"},
    }
    decoder = EventStreamDecoder()
    messages: list[Any] = []
    with trio.fail_after(10):
        async with http2.stream(
            "POST",
            "/",
            content=cbor2.dumps(request),
            headers={
                "x-amz-target": "Kinesis_20131202.SubscribeToShard",
                "content-type": aws.CBOR_TYPE,
            },
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
            async for chunk in response.aiter_raw():
                messages += decoder.feed(chunk)
                if any(m.text(":event-type") == "SubscribeToShardEvent" for m in messages):
                    break
    assert messages[0].text(":event-type") == "initial-response"
    event = next(m for m in messages if m.text(":event-type") == "SubscribeToShardEvent")
    body = cbor2.loads(event.payload, semantic_decoders={1: lambda value, _immutable: value})
    assert [r["Data"] for r in body["Records"]] == blobs
    assert body["ContinuationSequenceNumber"] == body["Records"][-1]["SequenceNumber"]
    assert all(r["ApproximateArrivalTimestamp"] > 1_600_000_000_000 for r in body["Records"])


async def test_aws_wire_over_tls_with_alpn_h2(tmp_path: Path) -> None:
    ca = trustme.CA()
    pem = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    context = server_ssl_context(str(pem), str(pem))
    async with (
        serve(tmp_path / "data", ssl_context=context) as running,
        httpx.AsyncClient(
            base_url=running.endpoint, http1=False, http2=True, verify=client_context
        ) as client,
    ):
        status, _, body = await call(client, "ListStreams", {})
        assert status == 200 and body["StreamNames"] == []


async def test_a_dry_run_is_refused_and_not_performed(http2: httpx.AsyncClient) -> None:
    await call(http2, "CreateStream", {"StreamName": STREAM, "ShardCount": 1})
    status, _, body = await call(
        http2,
        "PutRecord",
        {"StreamName": STREAM, "Data": "eA==", "PartitionKey": "k", "DryRun": True},
    )
    assert status == 400 and body["__type"] == "InvalidArgumentException"
    assert "DryRun" in body["message"]
    _, _, it = await call(
        http2,
        "GetShardIterator",
        {
            "StreamName": STREAM,
            "ShardId": "shardId-000000000000",
            "ShardIteratorType": "TRIM_HORIZON",
        },
    )
    _, _, page = await call(http2, "GetRecords", {"ShardIterator": it["ShardIterator"]})
    assert page["Records"] == []  # nothing was written
    status, _, _ = await call(
        http2,
        "PutRecord",
        {"StreamName": STREAM, "Data": "eA==", "PartitionKey": "k", "DryRun": False},
    )
    assert status == 200


async def test_a_malformed_http1_body_of_an_aws_request_is_refused_in_json(
    served: Served,
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", served.port)
    await stream.send_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\n"
        b"Content-Type: application/x-amz-json-1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    )
    answer = b""
    with trio.fail_after(10):
        while chunk := await stream.receive_some(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/x-amz-json-1.1" in head.lower()
    assert json.loads(body)["__type"] == "ValidationException"
