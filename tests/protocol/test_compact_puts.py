"""The compact PutRecords codec: columns from maps, answers back to per-record places."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.model import MAX_HASH_KEY
from broker.protocol.compact_puts import (
    ONE_BYTE_SHARDS,
    Placed,
    answered,
    compact_request,
    position_bytes,
)

plain_records = st.lists(
    st.fixed_dictionaries(
        {
            "PartitionKey": st.text(min_size=1, max_size=8).filter(lambda k: k.isprintable()),
            "Data": st.binary(max_size=8),
        }
    ),
    min_size=1,
    max_size=30,
)


@given(plain_records)
def test_plain_records_become_columns_with_their_md5(records: list[dict[str, Any]]) -> None:
    request = compact_request(records)
    assert request is not None
    assert request["PartitionKeys"] == [r["PartitionKey"] for r in records]
    assert request["Data"] == [r["Data"] for r in records]
    assert request["HashKeys"] == b"".join(
        hashlib.md5(r["PartitionKey"].encode()).digest() for r in records
    )
    # Digests already computed are taken as they are.
    given_digests = [bytes([i % 256]) * 16 for i in range(len(records))]
    again = compact_request(records, given_digests)
    assert again is not None
    assert again["HashKeys"] == b"".join(given_digests)


@pytest.mark.parametrize(
    "records",
    [
        [],
        [{"PartitionKey": "k"}],
        [{"PartitionKey": 5, "Data": b""}],
        [{"PartitionKey": "k", "Data": "text"}],
        [{"PartitionKey": "k", "Data": b"", "Other": 1}],
        [{"PartitionKey": "\ud800", "Data": b""}],
        [{"PartitionKey": "k", "Data": b"", "ExplicitHashKey": "-1"}],
        [{"PartitionKey": "k", "Data": b"", "ExplicitHashKey": str(MAX_HASH_KEY + 1)}],
    ],
)
def test_records_the_broker_must_name_keep_the_map_form(records: list[Any]) -> None:
    assert compact_request(records) is None


@st.composite
def compact_answers(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """A compact answer and the (shard, sequence) per record it stands for."""
    shards = draw(st.sampled_from([1, 3, ONE_BYTE_SHARDS, ONE_BYTE_SHARDS + 1, 700]))
    positions = draw(st.lists(st.integers(0, shards - 1), min_size=1, max_size=60))
    firsts: list[int | None] = [None] * shards
    for p in set(positions):
        firsts[p] = draw(st.integers(0, 10**30))
    shard_ids = [f"shardId-{i:012d}" for i in range(shards)]
    expected = []
    following = list(firsts)
    for p in positions:
        sequence = following[p]
        assert sequence is not None
        expected.append((shard_ids[p], str(sequence)))
        following[p] = sequence + 1
    body = {
        "FailedRecordCount": 0,
        "ShardIds": shard_ids,
        "FirstSequenceNumbers": [None if f is None else str(f) for f in firsts],
        "Positions": position_bytes(positions, shards),
    }
    return body, expected


@given(compact_answers())
def test_answers_expand_to_each_records_shard_and_sequence(
    case: tuple[dict[str, Any], list[tuple[str, str]]],
) -> None:
    body, expected = case
    width = 1 if len(body["ShardIds"]) <= ONE_BYTE_SHARDS else 2
    assert len(body["Positions"]) == width * len(expected)
    assert answered(body) == expected
    placed = Placed(body)
    assert len(placed) == len(expected)
    assert [placed[i] for i in range(len(expected))] == expected
    with pytest.raises(IndexError):
        placed[len(expected)]
