"""Compact PutRecords on a real broker: the same records, routes and numbers as the map form."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.errors import InvalidArgumentError, ShardMismatchError, ValidationError
from broker.hashing import ShardRouter
from broker.model import MAX_HASH_KEY
from broker.protocol.compact_puts import answered, compact_request
from broker.sequence import decode

from .conftest import Harness, open_harness

keys = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
records = st.lists(
    st.builds(
        lambda key, data, explicit: (
            {"PartitionKey": key, "Data": data}
            | ({} if explicit is None else {"ExplicitHashKey": str(explicit)})
        ),
        keys,
        st.binary(max_size=16),
        st.none() | st.integers(0, MAX_HASH_KEY),
    ),
    min_size=1,
    max_size=40,
)


def _compact(stream: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    request = compact_request(entries)
    assert request is not None
    return {"StreamName": stream, **request}


async def _placed(ops: Harness, stream: str, entries: list[dict[str, Any]]) -> list[Any]:
    """Each record's (shard index, offset) from a compact PutRecords."""
    out = await ops("PutRecords", **_compact(stream, entries))
    assert out["FailedRecordCount"] == 0
    assert "Records" not in out
    return [
        (decode(sequence).shard_index, decode(sequence).offset, shard)
        for shard, sequence in answered(out)
    ]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(records, min_size=1, max_size=3), shards=st.integers(1, 5))
def test_compact_and_map_requests_land_alike(
    tmp_path_factory: pytest.TempPathFactory, batches: list[Any], shards: int
) -> None:
    import trio

    async def main() -> None:
        async for ops in open_harness(tmp_path_factory.mktemp("compact")):
            await ops.create("maps", shards)
            await ops.create("columns", shards)
            router = ShardRouter(ops.broker.log.describe("columns").shards)
            for entries in batches:
                placed = await _placed(ops, "columns", entries)
                out = await ops("PutRecords", StreamName="maps", Records=entries)
                by_map = [decode(r["SequenceNumber"]) for r in out["Records"]]
                assert [(index, offset) for index, offset, _ in placed] == [
                    (s.shard_index, s.offset) for s in by_map
                ]
                for entry, (index, _offset, shard) in zip(entries, placed, strict=True):
                    want = router.shard_for_key(entry["PartitionKey"], entry.get("ExplicitHashKey"))
                    assert (index, shard) == (want, f"shardId-{want:012d}")
            for index in range(shards):
                shard = f"shardId-{index:012d}"
                by_maps = await ops.read_all("maps", shard)
                by_columns = await ops.read_all("columns", shard)
                assert [(r["PartitionKey"], r["Data"]) for r in by_columns] == [
                    (r["PartitionKey"], r["Data"]) for r in by_maps
                ]

    trio.run(main)


async def test_hash_keys_route_like_explicit_hash_keys(ops: Harness) -> None:
    await ops.create("s", 2)
    # Both records say "k", but their hash keys send them to either end of the hash space.
    out = await ops(
        "PutRecords",
        StreamName="s",
        Compact=True,
        PartitionKeys=["k", "k"],
        Data=[b"low", b"high"],
        HashKeys=bytes(16) + MAX_HASH_KEY.to_bytes(16, "big"),
    )
    assert [shard for shard, _ in answered(out)] == ["shardId-000000000000", "shardId-000000000001"]
    # Without HashKeys the broker hashes the keys itself.
    out = await ops("PutRecords", StreamName="s", Compact=True, PartitionKeys=["k"], Data=[b"x"])
    index = ShardRouter(ops.broker.log.describe("s").shards).shard_for_key("k")
    assert answered(out)[0][0] == f"shardId-{index:012d}"


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"PartitionKeys": ["a", "b"], "Data": [b"x"]}, InvalidArgumentError, "one of each"),
        ({"Data": [b"x"]}, ValidationError, "PartitionKeys"),
        ({"PartitionKeys": ["a"]}, ValidationError, "Data"),
        ({"PartitionKeys": [], "Data": []}, InvalidArgumentError, "PartitionKeys"),
        ({"PartitionKeys": ["a"] * 501, "Data": [b""] * 501}, InvalidArgumentError, "500"),
        (
            {"PartitionKeys": ["a"], "Data": [b"x"], "HashKeys": bytes(15)},
            InvalidArgumentError,
            "16 bytes per record",
        ),
        (
            {"PartitionKeys": ["a"], "Data": [b"x"], "HashKeys": "0" * 16},
            InvalidArgumentError,
            "HashKeys",
        ),
        ({"PartitionKeys": ["a", ""], "Data": [b"x", b"y"]}, InvalidArgumentError, r"Records\[1\]"),
        ({"PartitionKeys": ["a", 7], "Data": [b"x", b"y"]}, ValidationError, r"Records\[1\]"),
        ({"PartitionKeys": ["a"], "Data": ["text"]}, ValidationError, r"Records\[0\]\.Data"),
        ({"PartitionKeys": ["\ud800"], "Data": [b"x"]}, InvalidArgumentError, "surrogate"),
        (
            {"PartitionKeys": ["k", "kk"], "Data": [b"", b"x" * ((1 << 20) - 1)]},
            InvalidArgumentError,
            r"Records\[1\].*1048577 bytes",
        ),
        (
            {"PartitionKeys": ["k"] * 6, "Data": [b"x" * ((1 << 20) - 1)] * 6},
            InvalidArgumentError,
            r"Records\[5\].*5242880 bytes per PutRecords",
        ),
    ],
)
async def test_malformed_compact_requests_are_named_and_write_nothing(
    ops: Harness, fields: dict[str, Any], error: type[Exception], match: str
) -> None:
    await ops.create("s", 1)
    with pytest.raises(error, match=match):
        await ops("PutRecords", StreamName="s", Compact=True, **fields)
    assert await ops.read_all("s", "shardId-000000000000") == []


async def test_an_idempotent_compact_batch_is_answered_compactly_and_once(ops: Harness) -> None:
    await ops.create("s", 1)
    producer = (await ops("InitProducer"))["ProducerId"]
    batch = {"ProducerId": producer, "ShardId": "shardId-000000000000", "BatchNumber": 0}
    entries = [{"PartitionKey": f"k{i}", "Data": b"d"} for i in range(3)]
    first = await ops("PutRecords", **_compact("s", entries), **batch)
    again = await ops("PutRecords", **_compact("s", entries), **batch)
    assert (first["Deduplicated"], again["Deduplicated"]) == (False, True)
    assert answered(first) == answered(again)
    assert [decode(sequence).offset for _, sequence in answered(first)] == [1, 2, 3]
    assert len(await ops.read_all("s", "shardId-000000000000")) == 3
    await ops.create("two", 2)
    elsewhere = {"PartitionKey": "k", "Data": b"", "ExplicitHashKey": str(MAX_HASH_KEY)}
    with pytest.raises(ShardMismatchError, match="shardId-000000000001"):
        await ops("PutRecords", **_compact("two", [elsewhere]), **batch | {"BatchNumber": 1})


async def test_a_partly_throttled_compact_request_is_answered_record_by_record(
    tmp_path: Path,
) -> None:
    async for ops in open_harness(tmp_path, shard_write_records_per_s=3):
        await ops.create("s", 1)
        entries = [{"PartitionKey": f"k{i}", "Data": b"x"} for i in range(5)]
        out = await ops("PutRecords", **_compact("s", entries))
        assert out["FailedRecordCount"] == 2
        assert [("SequenceNumber" in r) for r in out["Records"]] == [True] * 3 + [False] * 2
        ops.clock.advance(1000)
        # Admitted whole through the same (limited) path: the compact answer again.
        out = await ops("PutRecords", **_compact("s", entries[:3]))
        assert [decode(sequence).offset for _, sequence in answered(out)] == [4, 5, 6]


def test_the_client_sends_md5_or_the_explicit_hash_key() -> None:
    request = compact_request(
        [
            {"PartitionKey": "a", "Data": b"1"},
            {"PartitionKey": "b", "Data": bytearray(b"2"), "ExplicitHashKey": "7"},
        ]
    )
    assert request == {
        "Compact": True,
        "PartitionKeys": ["a", "b"],
        "Data": [b"1", b"2"],
        "HashKeys": hashlib.md5(b"a").digest() + (7).to_bytes(16, "big"),
    }
