"""GetShardIterator and GetRecords: the five positions, limits, lag, shard ends, bad iterators."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from broker.errors import (
    ExpiredIteratorError,
    InvalidArgumentError,
    ResourceNotFoundError,
    ValidationError,
)
from broker.operations import as_dict
from broker.sequence import encode

from .conftest import START_MS, Harness, open_harness

S0 = "shardId-000000000000"
S1 = "shardId-000000000001"


async def put(ops: Harness, *payloads: bytes, stream: str = "s", shard_key: str = "0") -> list[str]:
    out = await ops(
        "PutRecords",
        StreamName=stream,
        Records=[{"PartitionKey": "k", "Data": p, "ExplicitHashKey": shard_key} for p in payloads],
    )
    return [r["SequenceNumber"] for r in out["Records"]]


async def test_positions(ops: Harness) -> None:
    await ops.create("s", 2)
    seqs = await put(ops, b"a", b"b", b"c")

    async def first(kind: str, **kw: object) -> list[bytes]:
        token = await ops.iterator("s", S0, kind, **kw)
        out = await ops("GetRecords", ShardIterator=token)
        return [r["Data"] for r in out["Records"]]

    assert await first("TRIM_HORIZON") == [b"a", b"b", b"c"]
    assert await first("LATEST") == []
    assert await first("AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[1]) == [b"b", b"c"]
    assert await first("AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[1]) == [b"c"]
    assert await first("AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[2]) == []
    assert await first("AT_TIMESTAMP", Timestamp=START_MS) == [b"a", b"b", b"c"]
    assert await first("AT_TIMESTAMP", Timestamp=START_MS + 1) == []
    ops.clock.advance(10)
    await put(ops, b"d")
    assert await first("AT_TIMESTAMP", Timestamp=START_MS + 5) == [b"d"]
    start = encode(ops.broker.log.describe("s").incarnation, 0, 0)
    assert await first("AT_SEQUENCE_NUMBER", StartingSequenceNumber=start) == [
        b"a",
        b"b",
        b"c",
        b"d",
    ]


async def test_records_shape_and_continuation(ops: Harness) -> None:
    await ops.create("s", 1)
    token = await ops.iterator("s", S0, "LATEST")
    empty = await ops("GetRecords", ShardIterator=token)
    assert empty["Records"] == [] and empty["MillisBehindLatest"] == 0
    assert isinstance(empty["NextShardIterator"], str)
    assert "ChildShards" not in empty
    seqs = await put(ops, b"x", b"y")
    out = await ops("GetRecords", ShardIterator=empty["NextShardIterator"])
    assert out["Records"] == [
        {
            "SequenceNumber": seqs[0],
            "ApproximateArrivalTimestamp": START_MS,
            "Data": b"x",
            "PartitionKey": "k",
        },
        {
            "SequenceNumber": seqs[1],
            "ApproximateArrivalTimestamp": START_MS,
            "Data": b"y",
            "PartitionKey": "k",
        },
    ]
    assert out["MillisBehindLatest"] == 0
    assert len(out["NextShardIterator"]) <= 512 and out["NextShardIterator"].isascii()


async def test_limit_and_millis_behind(ops: Harness) -> None:
    await ops.create("s", 1)
    await put(ops, b"1", b"2")
    ops.clock.advance(700)
    await put(ops, b"3")
    token = await ops.iterator("s", S0)
    out = await ops("GetRecords", ShardIterator=token, Limit=1)
    assert [r["Data"] for r in out["Records"]] == [b"1"]
    assert out["MillisBehindLatest"] == 700
    out = await ops("GetRecords", ShardIterator=out["NextShardIterator"], Limit=10_000)
    assert [r["Data"] for r in out["Records"]] == [b"2", b"3"]
    assert out["MillisBehindLatest"] == 0
    for bad in (0, 10_001):
        with pytest.raises(InvalidArgumentError, match="Limit"):
            await ops("GetRecords", ShardIterator=token, Limit=bad)
    with pytest.raises(ValidationError, match="Limit"):
        await ops("GetRecords", ShardIterator=token, Limit="5")


async def test_closed_shard_end(ops: Harness) -> None:
    await ops.create("s", 1)
    await put(ops, b"old")
    token = await ops.iterator("s", S0)
    await ops("SplitShard", StreamName="s", ShardToSplit=S0, NewStartingHashKey=str(1 << 127))
    out = await ops("GetRecords", ShardIterator=token)
    assert [r["Data"] for r in out["Records"]] == [b"old"]
    assert out["NextShardIterator"] is None
    children = out["ChildShards"]
    assert [c["ShardId"] for c in children] == [S1, "shardId-000000000002"]
    assert all(c["ParentShards"] == [S0] for c in children)
    assert children[0]["HashKeyRange"] == {
        "StartingHashKey": "0",
        "EndingHashKey": str((1 << 127) - 1),
    }
    # LATEST on a closed shard is at its end at once.
    latest = await ops.iterator("s", S0, "LATEST")
    end = await ops("GetRecords", ShardIterator=latest)
    assert (
        end["Records"] == [] and end["NextShardIterator"] is None and len(end["ChildShards"]) == 2
    )


async def test_iterator_request_errors(ops: Harness) -> None:
    await ops.create("s", 2)
    seqs = await put(ops, b"a")
    other_shard = await put(ops, b"b", shard_key=str((1 << 128) - 1))
    cases: list[tuple[dict[str, object], type, str]] = [
        ({"ShardId": S0}, ValidationError, "ShardIteratorType"),
        ({"ShardIteratorType": "LATEST"}, ValidationError, "ShardId"),
        ({"ShardId": "shard-0", "ShardIteratorType": "LATEST"}, InvalidArgumentError, "ShardId"),
        ({"ShardId": 0, "ShardIteratorType": "LATEST"}, ValidationError, "ShardId"),
        (
            {"ShardId": "shardId-000000000009", "ShardIteratorType": "LATEST"},
            ResourceNotFoundError,
            "shardId-000000000009",
        ),
        (
            {"ShardId": S0, "ShardIteratorType": "SOMEWHERE"},
            InvalidArgumentError,
            "ShardIteratorType",
        ),
        (
            {"ShardId": S0, "ShardIteratorType": "AT_SEQUENCE_NUMBER"},
            InvalidArgumentError,
            "StartingSequenceNumber",
        ),
        ({"ShardId": S0, "ShardIteratorType": "AT_TIMESTAMP"}, InvalidArgumentError, "Timestamp"),
        (
            {"ShardId": S0, "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": 1.5},
            ValidationError,
            "Timestamp",
        ),
        (
            {
                "ShardId": S0,
                "ShardIteratorType": "AT_SEQUENCE_NUMBER",
                "StartingSequenceNumber": "12x",
            },
            InvalidArgumentError,
            "SequenceNumber",
        ),
        (
            {
                "ShardId": S0,
                "ShardIteratorType": "AT_SEQUENCE_NUMBER",
                "StartingSequenceNumber": other_shard[0],
            },
            InvalidArgumentError,
            "Invalid StartingSequenceNumber",
        ),
        (
            {
                "ShardId": S0,
                "ShardIteratorType": "AT_SEQUENCE_NUMBER",
                "StartingSequenceNumber": str(int(seqs[0]) + 2),
            },
            InvalidArgumentError,
            "beyond",
        ),
    ]
    for request, error, match in cases:
        with pytest.raises(error, match=match):
            await ops("GetShardIterator", StreamName="s", **request)
    with pytest.raises(ResourceNotFoundError):
        await ops.iterator("nope", S0)


async def test_bad_iterators(ops: Harness) -> None:
    await ops.create("s", 1)
    token = await ops.iterator("s", S0)
    for bad in ("", "garbage", "é" * 10, token[:-1], token + "A", "x" * 513):
        with pytest.raises((InvalidArgumentError, ValidationError)):
            await ops("GetRecords", ShardIterator=bad)
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    with pytest.raises(InvalidArgumentError, match="ShardIterator"):
        await ops("GetRecords", ShardIterator=flipped)
    with pytest.raises(ValidationError):
        await ops("GetRecords", ShardIterator=b"bytes")
    with pytest.raises(ValidationError):
        await ops("GetRecords")


async def test_iterator_expiry(ops: Harness) -> None:
    await ops.create("s", 1)
    token = await ops.iterator("s", S0)
    ops.clock.advance(300_000)
    out = await ops("GetRecords", ShardIterator=token)
    ops.clock.advance(300_000)
    # The returned iterator is fresh; the first one has expired.
    await ops("GetRecords", ShardIterator=out["NextShardIterator"])
    with pytest.raises(ExpiredIteratorError, match="tolerated delay of 300000 milliseconds"):
        await ops("GetRecords", ShardIterator=token)


async def test_iterator_of_deleted_stream(ops: Harness) -> None:
    await ops.create("s", 1)
    token = await ops.iterator("s", S0)
    await ops("DeleteStream", StreamName="s")
    with pytest.raises(ResourceNotFoundError):
        await ops("GetRecords", ShardIterator=token)
    await ops.create("s", 1)
    with pytest.raises(ResourceNotFoundError, match="deleted"):
        await ops("GetRecords", ShardIterator=token)


async def test_iterators_survive_restart_with_a_secret(tmp_path: Path) -> None:
    async for ops in open_harness(tmp_path, iterator_secret="s3cret"):
        await ops.create("s", 1)
        await put(ops, b"kept")
        token = await ops.iterator("s", S0)
    async for ops in open_harness(tmp_path, iterator_secret="s3cret"):
        out = await ops("GetRecords", ShardIterator=token)
        assert [r["Data"] for r in out["Records"]] == [b"kept"]
    async for ops in open_harness(tmp_path):
        with pytest.raises(InvalidArgumentError):
            await ops("GetRecords", ShardIterator=token)


async def test_shorter_iterator_lifetime(tmp_path: Path) -> None:
    async for ops in open_harness(tmp_path, iterator_lifetime_s=1.0):
        await ops.create("s", 1)
        token = await ops.iterator("s", S0)
        ops.clock.advance(1001)
        with pytest.raises(ExpiredIteratorError, match="1000 milliseconds"):
            await ops("GetRecords", ShardIterator=token)


async def test_response_byte_bound(ops: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    from broker.operations import reads

    monkeypatch.setattr(reads, "MAX_RESPONSE_BYTES", 10)
    await ops.create("s", 1)
    await put(ops, b"aaaa", b"bbbb", b"cccc", b"d" * 50)  # one stored batch, 5 bytes a record
    token = await ops.iterator("s", S0)
    seen: list[bytes] = []
    pages = 0
    while len(seen) < 4:
        out = await ops("GetRecords", ShardIterator=token)
        seen.extend(r["Data"] for r in out["Records"])
        token = out["NextShardIterator"]
        pages += 1
    assert seen == [b"aaaa", b"bbbb", b"cccc", b"d" * 50]
    assert pages == 3  # two records, one record, then the oversized one on its own
    await ops("SplitShard", StreamName="s", ShardToSplit=S0, NewStartingHashKey=str(1 << 127))
    token = await ops.iterator("s", S0)
    out = await ops("GetRecords", ShardIterator=token)
    assert len(out["Records"]) == 2 and out["NextShardIterator"] is not None
    assert out["MillisBehindLatest"] == 0


def expand(out: dict[str, object]) -> list[dict[str, object]]:
    """The records of a compact GetRecords answer, in the map form."""
    records: list[dict[str, object]] = []
    for batch in out["Batches"]:  # type: ignore[attr-defined]
        first = int(batch["FirstSequenceNumber"])
        for i, (arrival, key, data) in enumerate(batch["Records"]):
            records.append(
                {
                    "SequenceNumber": str(first + i),
                    "ApproximateArrivalTimestamp": arrival,
                    "Data": data,
                    "PartitionKey": key,
                }
            )
    return records


async def test_compact_answers_the_same_records(ops: Harness) -> None:
    """Compact: the same records, iterator, lag and shard end, batches forwarded or cut."""
    from broker.operations import dispatch
    from broker.protocol.codec import encode_body

    await ops.create("s", 1)
    for size in (1, 3, 7, 2, 5):  # stored batches of these sizes
        await put(ops, *[bytes([size, i]) for i in range(size)])
        ops.clock.advance(100)
    newest = 18
    await ops("SplitShard", StreamName="s", ShardToSplit=S0, NewStartingHashKey=str(1 << 127))
    start = encode(ops.broker.log.describe("s").incarnation, 0, 0)
    for after in range(0, newest + 1, 1):
        for limit in (1, 2, 4, 6, 10, 10_000):
            kind = "AFTER_SEQUENCE_NUMBER"
            first = str(int(start) + after)
            token = await ops.iterator("s", S0, kind, StartingSequenceNumber=first)
            plain = await ops("GetRecords", ShardIterator=token, Limit=limit)
            raw = await dispatch(
                ops.broker, "GetRecords", {"ShardIterator": token, "Limit": limit, "Compact": True}
            )
            compact = as_dict(raw)
            assert encode_body(raw) == msgpack.packb(compact)
            assert expand(compact) == plain["Records"], (after, limit)
            assert "Records" not in compact
            for field in ("NextShardIterator", "MillisBehindLatest", "ChildShards"):
                assert compact.get(field) == plain.get(field), (field, after, limit)


async def test_compact_byte_bound(ops: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    from broker.operations import reads

    monkeypatch.setattr(reads, "MAX_RESPONSE_BYTES", 60)
    await ops.create("s", 1)
    payloads = [b"a" * 10, b"b" * 10, b"c" * 10, b"d" * 100, b"e" * 10]
    await put(ops, *payloads[:2])
    await put(ops, *payloads[2:])
    token = await ops.iterator("s", S0)
    seen: list[bytes] = []
    while len(seen) < len(payloads):
        out = await ops("GetRecords", ShardIterator=token, Compact=True)
        records = expand(out)
        assert records, "every call makes progress"
        size = sum(len(r["Data"]) + len(r["PartitionKey"]) for r in records)  # type: ignore[arg-type]
        assert size <= 60 or len(records) == 1
        seen.extend(r["Data"] for r in records)  # type: ignore[misc]
        token = out["NextShardIterator"]
    assert seen == payloads
