"""The null endpoint: Kinesis' JSON wire answered from canned bytes, boto3's own ceiling.

``kinesis-api`` measures boto3 against shardline and the emulators. What a
Python client can get at best is what boto3 reaches against a server that
costs nothing: this one. It speaks just enough HTTP/1.1 for botocore
(persistent connections, ``Content-Length`` bodies, requests read whole
before they are answered, so that a connection stays in step) and answers by
``X-Amz-Target`` with responses built once at start:

- ``PutRecords``: ``FailedRecordCount`` 0 and ``RECORDS_PER_REQUEST`` (500)
  success entries, a real response's length. The body is not decoded: the
  load always sends 500 records, and what is measured is the client's cost.
  Each one adds 500 to a counter of acknowledged records (the only state).
- ``GetShardIterator`` / ``GetRecords``: so that the read-back runs the same
  code as for a real system. An iterator is the number of pages left; every
  page is the same ``PAGE_RECORDS`` (10,000) records of 100 B with AWS-shaped
  sequence numbers and arrival timestamps, then an empty page with
  ``MillisBehindLatest`` 0 ends the shard. A TRIM_HORIZON iterator holds as
  many pages as cover the shard's share of the records acknowledged so far,
  so the read-back reads about what was put, from canned bytes (its
  ``verified`` is None: there is nothing to verify).
- ``CreateStream``, ``DescribeStreamSummary`` (ACTIVE, ``SHARDS`` shards),
  ``ListShards``: canned; anything else: 400 ``UnknownOperationException``.

Every response carries ``x-amzn-RequestId`` (a counter), as botocore reads
it. The server is one ``asyncio.Protocol`` in its own process: the load's 4
connections need a few hundred requests per second of it at most, and a
protocol object per connection with no framework in between is the least
work per request the standard library allows.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import random

SHARDS = 4
RECORDS_PER_REQUEST = 500
RECORD_BYTES = 100
PAGE_RECORDS = 10_000
#: Requests larger than this (bytes, headers and body) close the connection.
MAX_REQUEST_BYTES = 16 * 2**20
CONTENT_TYPE = b"application/x-amz-json-1.1"
_SEQUENCE = 49_650_000_000_000_000_000_000_000_000_000_000_000_000_000_000


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def shard_id(n: int) -> str:
    return f"shardId-{n:012d}"


def put_response() -> bytes:
    """PutRecords' answer to a request of RECORDS_PER_REQUEST records, all written."""
    entries = [
        {"SequenceNumber": str(_SEQUENCE + i), "ShardId": shard_id(i % SHARDS)}
        for i in range(RECORDS_PER_REQUEST)
    ]
    return _json({"FailedRecordCount": 0, "Records": entries})


def page_parts(seed: int = 3) -> tuple[bytes, bytes]:
    """A GetRecords page of PAGE_RECORDS records, split where ``NextShardIterator`` goes."""
    rng = random.Random(seed)
    records = [
        {
            "SequenceNumber": str(_SEQUENCE + i),
            "ApproximateArrivalTimestamp": 1_764_000_000.123,
            "Data": base64.b64encode(rng.randbytes(RECORD_BYTES)).decode(),
            "PartitionKey": f"k{i}-{rng.getrandbits(40):x}",
        }
        for i in range(PAGE_RECORDS)
    ]
    head = _json({"Records": records, "MillisBehindLatest": 0})[:-1]
    return head + b',"NextShardIterator":"', b'"}'


def describe_response(stream: str) -> bytes:
    return _json(
        {
            "StreamDescriptionSummary": {
                "StreamName": stream,
                "StreamARN": f"arn:aws:kinesis:us-east-1:000000000000:stream/{stream}",
                "StreamStatus": "ACTIVE",
                "StreamModeDetails": {"StreamMode": "PROVISIONED"},
                "RetentionPeriodHours": 24,
                "StreamCreationTimestamp": 1_764_000_000.0,
                "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
                "EncryptionType": "NONE",
                "OpenShardCount": SHARDS,
                "ConsumerCount": 0,
            }
        }
    )


def shards_response() -> bytes:
    step = 2**128 // SHARDS
    shards = [
        {
            "ShardId": shard_id(n),
            "HashKeyRange": {
                "StartingHashKey": str(n * step),
                "EndingHashKey": str(2**128 - 1 if n == SHARDS - 1 else (n + 1) * step - 1),
            },
            "SequenceNumberRange": {"StartingSequenceNumber": str(_SEQUENCE)},
        }
        for n in range(SHARDS)
    ]
    return _json({"Shards": shards})


class Canned:
    """The responses, built once, and the count of records acknowledged."""

    def __init__(self) -> None:
        self.put = put_response()
        self.page_head, self.page_tail = page_parts()
        self.empty_page = _json({"Records": [], "MillisBehindLatest": 0, "NextShardIterator": "0"})
        self.shards = shards_response()
        self.acknowledged = 0

    def answer(self, target: bytes, body: bytes) -> tuple[int, bytes]:
        """Status and body for one request to ``Kinesis_20131202.<target>``."""
        if target == b"PutRecords":
            self.acknowledged += RECORDS_PER_REQUEST
            return 200, self.put
        if target == b"GetRecords":
            left = int(json.loads(body)["ShardIterator"])
            if left <= 0:
                return 200, self.empty_page
            return 200, self.page_head + str(left - 1).encode() + self.page_tail
        if target == b"GetShardIterator":
            pages = math.ceil(self.acknowledged / SHARDS / PAGE_RECORDS)
            return 200, _json({"ShardIterator": str(pages)})
        if target == b"CreateStream":
            return 200, b"{}"
        if target == b"DescribeStreamSummary":
            return 200, describe_response(json.loads(body)["StreamName"])
        if target == b"ListShards":
            return 200, self.shards
        error = {"__type": "UnknownOperationException", "message": target.decode("latin-1")}
        return 400, _json(error)


_REASONS = {200: b"OK", 400: b"Bad Request"}


class NullProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection: parse a request's head, wait for its body, answer, repeat."""

    def __init__(self, canned: Canned, ids: list[int]) -> None:
        self.canned = canned
        self.ids = ids
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self._one():
            pass
        if len(self.buffer) > MAX_REQUEST_BYTES and self.transport is not None:
            self.transport.close()

    def _one(self) -> bool:
        """Answer the first complete request in the buffer; False when there is none."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        length = 0
        target = b""
        for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"x-amz-target":
                target = value.strip().rpartition(b".")[2]
        start = end + 4
        if len(self.buffer) < start + length:
            return False
        body = bytes(self.buffer[start : start + length])
        del self.buffer[: start + length]
        status, payload = self.canned.answer(target, body)
        self.ids[0] += 1
        head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
            status,
            _REASONS[status],
            CONTENT_TYPE,
            len(payload),
        )
        head += b"x-amzn-RequestId: null-%d\r\n\r\n" % self.ids[0]
        assert self.transport is not None
        self.transport.write(head + payload)
        return True


async def serve(host: str, port: int) -> None:
    canned = Canned()
    ids = [0]
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: NullProtocol(canned, ids), host, port)
    async with server:
        await server.serve_forever()


def child_main(argv: list[str]) -> None:
    """``--port P [--host H]``: serve until killed (SIGTERM ends the process)."""
    parser = argparse.ArgumentParser(prog="null kinesis endpoint")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))
