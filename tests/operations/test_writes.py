"""PutRecord and PutRecords: routing, results, limits, write throttling, reshard races."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.errors import (
    InvalidArgumentError,
    ProvisionedThroughputExceededError,
    ResourceNotFoundError,
    ShardClosedError,
    ValidationError,
)
from broker.hashing import ShardRouter, hash_partition_key
from broker.model import MAX_HASH_KEY
from broker.operations.throttle import ShardWriteLimiter
from broker.sequence import decode

from .conftest import Harness, open_harness


async def test_put_record(ops: Harness) -> None:
    await ops.create("s", 4)
    out = await ops("PutRecord", StreamName="s", PartitionKey="k", Data=b"hello")
    desc = ops.broker.log.describe("s")
    index = ShardRouter(desc.shards).shard_for_key("k")
    assert out["ShardId"] == f"shardId-{index:012d}"
    assert out["EncryptionType"] == "NONE"
    seq = decode(out["SequenceNumber"])
    assert (seq.incarnation, seq.shard_index, seq.offset) == (desc.incarnation, index, 1)
    again = await ops(
        "PutRecord",
        StreamName="s",
        PartitionKey="k",
        Data=b"",
        SequenceNumberForOrdering=out["SequenceNumber"],
    )
    assert int(again["SequenceNumber"]) == int(out["SequenceNumber"]) + 1
    records = await ops.read_all("s", out["ShardId"])
    assert [(r["PartitionKey"], r["Data"]) for r in records] == [("k", b"hello"), ("k", b"")]


async def test_put_record_explicit_hash_key_and_arn(ops: Harness) -> None:
    await ops.create("s", 2)
    arn = "arn:aws:kinesis:us-east-1:000000000000:stream/s"
    low = await ops("PutRecord", StreamARN=arn, PartitionKey="k", Data=b"x", ExplicitHashKey="0")
    high = await ops(
        "PutRecord", StreamName="s", PartitionKey="k", Data=b"x", ExplicitHashKey=str(MAX_HASH_KEY)
    )
    assert (low["ShardId"], high["ShardId"]) == ("shardId-000000000000", "shardId-000000000001")


@pytest.mark.parametrize(
    ("request_", "error", "match"),
    [
        ({"PartitionKey": "k"}, ValidationError, "Data"),
        ({"Data": b"x"}, ValidationError, "PartitionKey"),
        ({"Data": "text", "PartitionKey": "k"}, ValidationError, "Data"),
        ({"Data": b"x", "PartitionKey": 5}, ValidationError, "PartitionKey"),
        ({"Data": b"x", "PartitionKey": ""}, InvalidArgumentError, "PartitionKey"),
        ({"Data": b"x", "PartitionKey": "k" * 257}, InvalidArgumentError, "PartitionKey"),
        ({"Data": b"x", "PartitionKey": "\ud800"}, InvalidArgumentError, "PartitionKey"),
        (
            {"Data": b"x", "PartitionKey": "k", "ExplicitHashKey": "-1"},
            InvalidArgumentError,
            "Hash",
        ),
        (
            {"Data": b"x", "PartitionKey": "k", "ExplicitHashKey": str(1 << 128)},
            InvalidArgumentError,
            "range",
        ),
        (
            {"Data": b"x", "PartitionKey": "k", "SequenceNumberForOrdering": "x"},
            InvalidArgumentError,
            "Sequence",
        ),
        ({"Data": b"x" * (1 << 20), "PartitionKey": "k"}, InvalidArgumentError, "1048577 bytes"),
    ],
)
async def test_put_record_errors(
    ops: Harness, request_: dict[str, object], error: type, match: str
) -> None:
    await ops.create("s", 1)
    with pytest.raises(error, match=match):
        await ops("PutRecord", StreamName="s", **request_)


async def test_put_record_unknown_stream(ops: Harness) -> None:
    with pytest.raises(ResourceNotFoundError):
        await ops("PutRecord", StreamName="nope", PartitionKey="k", Data=b"x")


async def test_put_records_order_and_sequence(ops: Harness) -> None:
    await ops.create("s", 3)
    entries = [{"PartitionKey": f"key-{i}", "Data": f"d{i}".encode()} for i in range(200)]
    out = await ops("PutRecords", StreamName="s", Records=entries)
    assert out["FailedRecordCount"] == 0
    results = out["Records"]
    assert len(results) == 200
    desc = ops.broker.log.describe("s")
    router = ShardRouter(desc.shards)
    expected_next: dict[int, int] = {}
    for i, result in enumerate(results):
        index = router.shard_for_key(f"key-{i}")
        assert result["ShardId"] == f"shardId-{index:012d}"
        seq = decode(result["SequenceNumber"])
        expected_next[index] = expected_next.get(index, 0) + 1
        assert (seq.shard_index, seq.offset) == (index, expected_next[index])
    for index in range(3):
        shard = f"shardId-{index:012d}"
        got = await ops.read_all("s", shard)
        want = [e for e, r in zip(entries, results, strict=True) if r["ShardId"] == shard]
        assert [(g["PartitionKey"], g["Data"]) for g in got] == [
            (w["PartitionKey"], w["Data"]) for w in want
        ]
        assert [g["SequenceNumber"] for g in got] == [
            r["SequenceNumber"] for r in results if r["ShardId"] == shard
        ]


async def test_put_records_limits(ops: Harness) -> None:
    await ops.create("s", 1)
    one = {"PartitionKey": "k", "Data": b"x"}
    out = await ops("PutRecords", StreamName="s", Records=[one] * 500)
    assert len(out["Records"]) == 500
    with pytest.raises(InvalidArgumentError, match="Records"):
        await ops("PutRecords", StreamName="s", Records=[one] * 501)
    with pytest.raises(InvalidArgumentError, match="Records"):
        await ops("PutRecords", StreamName="s", Records=[])
    with pytest.raises(ValidationError, match="Records"):
        await ops("PutRecords", StreamName="s")
    with pytest.raises(ValidationError, match="Records"):
        await ops("PutRecords", StreamName="s", Records={"a": one})
    with pytest.raises(ValidationError, match=r"Records\[1\]"):
        await ops("PutRecords", StreamName="s", Records=[one, "x"])
    with pytest.raises(ValidationError, match=r"Records\[2\]\.Data"):
        await ops("PutRecords", StreamName="s", Records=[one, one, {"PartitionKey": "k"}])
    with pytest.raises(InvalidArgumentError, match=r"Records\[0\]: PartitionKey"):
        await ops("PutRecords", StreamName="s", Records=[{"PartitionKey": "", "Data": b""}])
    big = {"PartitionKey": "kk", "Data": b"x" * ((1 << 20) - 1)}
    with pytest.raises(InvalidArgumentError, match=r"Records\[1\].*1048577 bytes.*1048576"):
        await ops("PutRecords", StreamName="s", Records=[one, big])
    near = {"PartitionKey": "k", "Data": b"x" * ((1 << 20) - 1)}
    with pytest.raises(InvalidArgumentError, match=r"Records\[5\].*5242880 bytes per PutRecords"):
        await ops("PutRecords", StreamName="s", Records=[near] * 6)
    # Nothing of a refused request was written.
    assert len(await ops.read_all("s", "shardId-000000000000")) == 500


async def test_configured_record_limits(tmp_path: Path) -> None:
    async for ops in open_harness(tmp_path, max_record_bytes=10, max_request_records_bytes=25):
        await ops.create("s", 1)
        await ops("PutRecord", StreamName="s", PartitionKey="k", Data=b"x" * 9)
        with pytest.raises(InvalidArgumentError, match="11 bytes"):
            await ops("PutRecord", StreamName="s", PartitionKey="kk", Data=b"x" * 9)
        with pytest.raises(InvalidArgumentError, match=r"Records\[2\].*30 bytes"):
            await ops(
                "PutRecords", StreamName="s", Records=[{"PartitionKey": "k", "Data": b"x" * 9}] * 3
            )


async def test_write_throttling(tmp_path: Path) -> None:
    async for ops in open_harness(tmp_path, shard_write_records_per_s=3):
        await ops.create("s", 1)
        records = [{"PartitionKey": f"k{i}", "Data": b"x"} for i in range(5)]
        out = await ops("PutRecords", StreamName="s", Records=records)
        assert out["FailedRecordCount"] == 2
        assert [("SequenceNumber" in r) for r in out["Records"]] == [True] * 3 + [False] * 2
        failed = out["Records"][3]
        assert failed["ErrorCode"] == "ProvisionedThroughputExceededException"
        assert "shardId-000000000000" in failed["ErrorMessage"]
        assert "stream s" in failed["ErrorMessage"]
        assert "000000000000" in failed["ErrorMessage"]
        with pytest.raises(ProvisionedThroughputExceededError):
            await ops("PutRecord", StreamName="s", PartitionKey="k", Data=b"x")
        all_failed = await ops("PutRecords", StreamName="s", Records=records[:2])
        assert all_failed["FailedRecordCount"] == 2
        ops.clock.advance(1000)
        out = await ops("PutRecords", StreamName="s", Records=records[:3])
        assert out["FailedRecordCount"] == 0
        stored = await ops.read_all("s", "shardId-000000000000")
        assert [r["PartitionKey"] for r in stored] == ["k0", "k1", "k2", "k0", "k1", "k2"]


def test_limiter_buckets() -> None:
    limiter = ShardWriteLimiter(records_per_s=0, bytes_per_s=100)
    assert limiter.enabled
    assert limiter.admit(1, 0, 60, 0)
    assert not limiter.admit(1, 0, 60, 0)
    assert limiter.admit(1, 1, 60, 0)  # another shard has its own bucket
    assert not limiter.admit(1, 0, 60, 100)  # 40 + 10
    assert limiter.admit(1, 0, 60, 200)  # 40 + 20 refilled
    assert limiter.admit(1, 0, 100, 10_000)  # capped at one second's worth
    assert not ShardWriteLimiter(0, 0).enabled


async def test_reshard_race_reroutes_once(ops: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    await ops.create("s", 1)
    log = ops.broker.log
    real_append = log.append
    calls: list[dict[int, int]] = []

    async def racing_append(stream, records, *, incarnation=None):  # type: ignore[no-untyped-def]
        calls.append({k: len(v) for k, v in records.items()})
        if len(calls) == 1:
            await log.split_shard("s", 0, 1 << 127)
            raise ShardClosedError("shard closed by a reshard")
        return await real_append(stream, records, incarnation=incarnation)

    monkeypatch.setattr(log, "append", racing_append)
    entries = [
        {"PartitionKey": "k", "Data": b"a", "ExplicitHashKey": "5"},
        {"PartitionKey": "k", "Data": b"b", "ExplicitHashKey": str(MAX_HASH_KEY)},
    ]
    out = await ops("PutRecords", StreamName="s", Records=entries)
    assert out["FailedRecordCount"] == 0
    assert [r["ShardId"] for r in out["Records"]] == [
        "shardId-000000000001",
        "shardId-000000000002",
    ]
    assert calls == [{0: 2}, {1: 1, 2: 1}]


async def test_reshard_race_twice_is_retriable(
    ops: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ops.create("s", 1)

    async def always_closed(stream, records, *, incarnation=None):  # type: ignore[no-untyped-def]
        raise ShardClosedError("shard closed by a reshard")

    monkeypatch.setattr(ops.broker.log, "append", always_closed)
    with pytest.raises(ShardClosedError) as info:
        await ops("PutRecord", StreamName="s", PartitionKey="k", Data=b"x")
    assert info.value.retriable and info.value.http_status == 400


async def test_real_split_routes_new_writes_to_children(ops: Harness) -> None:
    await ops.create("s", 1)
    await ops("PutRecord", StreamName="s", PartitionKey="k", Data=b"before")
    await ops(
        "SplitShard",
        StreamName="s",
        ShardToSplit="shardId-000000000000",
        NewStartingHashKey=str(1 << 127),
    )
    out = await ops("PutRecord", StreamName="s", PartitionKey="k", Data=b"after")
    expected = 1 if hash_partition_key("k") < (1 << 127) else 2
    assert out["ShardId"] == f"shardId-{expected:012d}"
