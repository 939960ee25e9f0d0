"""SubscribeToShard against a real server, read with a bare HTTP/2 connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from broker.client import Client
from tests.server.harness import RawH2, Running, running_server

S0 = "shardId-000000000000"


@pytest.fixture
async def short_lived(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    async with running_server(
        tmp_path,
        monkeypatch,
        subscription_lifetime_s=0.5,
        subscription_heartbeat_s=0.1,
        subscription_takeover_window_s=30.0,
    ) as server:
        yield server


def events_of(body: bytes) -> list[dict[str, Any]]:
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(body)
    return list(unpacker)


async def subscribe(port: int, body: dict[str, Any]) -> tuple[int, list[dict[str, Any]] | dict]:
    connection = await RawH2.open(port)
    stream_id = await connection.request(
        "POST",
        "/v1/SubscribeToShard",
        extra_headers=[(b"content-type", b"application/msgpack")],
        body=msgpack.packb(body),
    )
    status, raw = await connection.response(stream_id)
    if status != 200:
        return status, msgpack.unpackb(raw)
    return status, events_of(raw)


async def test_records_then_heartbeats_until_the_lifetime_ends(short_lived: Running) -> None:
    async with Client(short_lived.endpoint) as client:
        await client.create_stream("s", 1)
        stream_arn = (await client.describe_stream_summary("s")).stream_arn
        consumer = (await client.register_stream_consumer(stream_arn, "reader")).consumer_arn
        await client.put_records("s", [{"Data": b"%d" % i, "PartitionKey": "k"} for i in range(5)])
        with trio.fail_after(10):
            status, events = await subscribe(
                short_lived.port,
                {
                    "ConsumerARN": consumer,
                    "ShardId": S0,
                    "StartingPosition": {"Type": "TRIM_HORIZON"},
                },
            )
        assert status == 200
        assert isinstance(events, list)
        records = [r for e in events if e["Type"] == "records" for r in e["Records"]]
        assert [r[2] for r in records] == [b"%d" % i for i in range(5)]
        assert events[-1]["Type"] == "heartbeat"  # ended quietly by its lifetime
        # A subscription that just ended does not count against the takeover window.
        with trio.fail_after(10):
            status, again = await subscribe(
                short_lived.port,
                {
                    "ConsumerARN": consumer,
                    "ShardId": S0,
                    "StartingPosition": {
                        "Type": "AFTER_SEQUENCE_NUMBER",
                        "SequenceNumber": events[-1]["ContinuationSequenceNumber"],
                    },
                },
            )
        assert status == 200 and isinstance(again, list)
        assert not [e for e in again if e["Type"] == "records"]


async def test_refusals_come_before_the_body(short_lived: Running) -> None:
    async with Client(short_lived.endpoint) as client:
        await client.create_stream("s", 1)
        stream_arn = (await client.describe_stream_summary("s")).stream_arn
        consumer = (await client.register_stream_consumer(stream_arn, "reader")).consumer_arn
        cases = [
            ({"ShardId": S0, "StartingPosition": {"Type": "LATEST"}}, "ValidationException"),
            (
                {
                    "ConsumerARN": consumer + "9",
                    "ShardId": S0,
                    "StartingPosition": {"Type": "LATEST"},
                },
                "ResourceNotFoundException",
            ),
            (
                {
                    "ConsumerARN": consumer,
                    "ShardId": "shardId-000000000009",
                    "StartingPosition": {"Type": "LATEST"},
                },
                "ResourceNotFoundException",
            ),
            (
                {"ConsumerARN": consumer, "ShardId": S0, "StartingPosition": {"Type": "NOWHERE"}},
                "InvalidArgumentException",
            ),
            ({"ConsumerARN": consumer, "ShardId": S0}, "InvalidArgumentException"),
        ]
        for body, name in cases:
            with trio.fail_after(10):
                status, answer = await subscribe(short_lived.port, body)
            assert status == 400, (body, answer)
            assert isinstance(answer, dict) and answer["__type"] == name, (body, answer)
