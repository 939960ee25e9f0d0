"""Routing: partition key -> MD5 -> 128-bit hash key -> the open shard whose range holds it."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import InvalidArgumentError
from broker.hashing import (
    COUNTED_ENDS,
    ShardRouter,
    even_ranges,
    hash_partition_key,
    parse_explicit_hash_key,
    validate_partition_key,
)
from broker.log import catalog
from broker.model import MAX_HASH_KEY, HashKeyRange, Shard, StreamDescription

#: Partition keys as Kinesis allows them: 1 to 256 Unicode characters (no lone surrogates).
partition_keys = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=256
)
hash_keys = st.integers(0, MAX_HASH_KEY)


def _stream(shard_count: int) -> StreamDescription:
    return catalog.new_stream("s", 1, shard_count, 0, max_shards=1024)


@st.composite
def resharded_streams(draw: st.DrawFn) -> StreamDescription:
    """A stream after a few random splits and merges (uneven ranges, closed shards)."""
    desc = _stream(draw(st.integers(1, 8)))
    for _ in range(draw(st.integers(0, 6))):
        open_shards = sorted(desc.open_shards, key=lambda s: s.hash_range.start)
        if draw(st.booleans()) or len(open_shards) == 1:
            shard = draw(st.sampled_from(open_shards))
            low, high = shard.hash_range.start, shard.hash_range.end
            if high - low < 3:
                continue
            key = draw(st.integers(low + 2, high - 1))
            desc = catalog.split(desc, shard.index, key, 0, lambda i: 0, max_shards=1024)
        else:
            i = draw(st.integers(0, len(open_shards) - 2))
            a, b = open_shards[i], open_shards[i + 1]
            desc = catalog.merge(desc, a.index, b.index, 0, lambda i: 0)
    return desc


def _holder(desc: StreamDescription, hash_key: int) -> int:
    (shard,) = [s for s in desc.open_shards if hash_key in s.hash_range]
    return shard.index


@given(partition_keys)
def test_md5_routing_matches_the_reference_formula(key: str) -> None:
    assert hash_partition_key(key) == int(hashlib.md5(key.encode()).hexdigest(), 16)
    assert 0 <= hash_partition_key(key) <= MAX_HASH_KEY


def test_known_md5_values() -> None:
    assert hash_partition_key("a") == 0x0CC175B9C0F1B6A831C399E269772661
    # Non-ASCII keys hash their UTF-8 bytes.
    assert hash_partition_key("é") == int(hashlib.md5(b"\xc3\xa9").hexdigest(), 16)


@given(resharded_streams(), st.lists(st.tuples(partition_keys, st.binary(max_size=8)), max_size=60))
def test_group_puts_each_record_in_the_shard_holding_its_hash(
    desc: StreamDescription, records: list[tuple[str, bytes]]
) -> None:
    router = ShardRouter(desc.shards)
    groups = router.group(records)
    open_indexes = {s.index for s in desc.open_shards}
    assert set(groups) <= open_indexes
    assert all(groups.values())  # no empty buckets
    for index, bucket in groups.items():
        for key, _ in bucket:
            assert _holder(desc, hash_partition_key(key)) == index
    # Nothing lost, nothing added, and each shard keeps the records' relative order.
    assert sum(len(b) for b in groups.values()) == len(records)
    for index, bucket in groups.items():
        expected = [r for r in records if _holder(desc, hash_partition_key(r[0])) == index]
        assert bucket == expected


@given(resharded_streams(), hash_keys)
def test_shard_for_hash_finds_the_open_holder(desc: StreamDescription, hash_key: int) -> None:
    assert ShardRouter(desc.shards).shard_for_hash(hash_key) == _holder(desc, hash_key)


@given(resharded_streams())
def test_range_boundaries_route_to_their_own_shard(desc: StreamDescription) -> None:
    router = ShardRouter(desc.shards)
    for shard in desc.open_shards:
        assert router.shard_for_hash(shard.hash_range.start) == shard.index
        assert router.shard_for_hash(shard.hash_range.end) == shard.index
    assert router.shard_for_hash(0) == _holder(desc, 0)
    assert router.shard_for_hash(MAX_HASH_KEY) == _holder(desc, MAX_HASH_KEY)


@st.composite
def keys_near_the_ends(draw: st.DrawFn) -> tuple[StreamDescription, list[int]]:
    """A stream and hash keys, many of them on, next to or sharing the high half of a range end."""
    desc = draw(resharded_streams())
    ends = [s.hash_range.end for s in desc.open_shards]
    near = st.sampled_from(ends).flatmap(
        lambda end: st.sampled_from(
            [end - 1, end, end + 1, (end >> 64) << 64, ((end >> 64) << 64) | ((1 << 64) - 1)]
        )
    )
    keys = draw(st.lists(st.one_of(hash_keys, near), max_size=40))
    return desc, [min(max(k, 0), MAX_HASH_KEY) for k in keys]


@given(keys_near_the_ends())
def test_digest_positions_agree_with_bisect(case: tuple[StreamDescription, list[int]]) -> None:
    desc, keys = case
    router = ShardRouter(desc.shards)
    digests = b"".join(k.to_bytes(16, "big") for k in keys)
    positions = router.digest_positions(digests).tolist()
    assert [router.indexes[p] for p in positions] == [_holder(desc, k) for k in keys]


@given(st.lists(hash_keys, max_size=40))
def test_digest_positions_of_a_stream_with_many_shards(keys: list[int]) -> None:
    # Past COUNTED_ENDS ends the positions come from a binary search instead of counting.
    desc = _stream(COUNTED_ENDS + 9)
    ends = [s.hash_range.end for s in desc.open_shards]
    keys = keys + ends + [end + 1 for end in ends[:-1]] + [(end >> 64) << 64 for end in ends]
    router = ShardRouter(desc.shards)
    positions = router.digest_positions(b"".join(k.to_bytes(16, "big") for k in keys)).tolist()
    assert [router.indexes[p] for p in positions] == [_holder(desc, k) for k in keys]


def test_digest_positions_with_ranges_narrower_than_two_to_the_64() -> None:
    desc = _stream(2)
    first = desc.open_shards[0]
    # Two ends in one 2^64 block: the vectorized search cannot settle ties, so it bisects.
    desc = catalog.split(desc, first.index, 5, 0, lambda i: 0, max_shards=1024)
    upper = next(s for s in desc.open_shards if s.hash_range.start == 5)
    desc = catalog.split(desc, upper.index, 10, 0, lambda i: 0, max_shards=1024)
    router = ShardRouter(desc.shards)
    keys = [0, 4, 5, 6, 9, 10, 11, first.hash_range.end, first.hash_range.end + 1, MAX_HASH_KEY]
    digests = b"".join(k.to_bytes(16, "big") for k in keys)
    positions = router.digest_positions(digests).tolist()
    assert [router.indexes[p] for p in positions] == [_holder(desc, k) for k in keys]


@given(resharded_streams(), partition_keys, hash_keys)
def test_explicit_hash_key_overrides_the_partition_key(
    desc: StreamDescription, key: str, hash_key: int
) -> None:
    router = ShardRouter(desc.shards)
    assert router.shard_for_key(key) == _holder(desc, hash_partition_key(key))
    assert router.shard_for_key(key, str(hash_key)) == _holder(desc, hash_key)


def test_router_refuses_a_shard_map_with_a_gap_or_overlap() -> None:
    half = (MAX_HASH_KEY + 1) // 2
    with pytest.raises(ValueError, match="gap or overlap"):
        ShardRouter(
            [Shard(0, HashKeyRange(0, half - 2), 0), Shard(1, HashKeyRange(half, MAX_HASH_KEY), 0)]
        )
    with pytest.raises(ValueError, match="gap or overlap"):
        ShardRouter(
            [Shard(0, HashKeyRange(0, half), 0), Shard(1, HashKeyRange(half, MAX_HASH_KEY), 0)]
        )
    with pytest.raises(ValueError, match="cover"):
        ShardRouter([Shard(0, HashKeyRange(0, half), 0)])


def test_router_ignores_closed_shards() -> None:
    desc = catalog.split(_stream(1), 0, 1 << 127, 0, lambda i: 5, max_shards=4)
    router = ShardRouter(desc.shards)
    assert router.shard_for_hash(0) == 1
    assert router.shard_for_hash(MAX_HASH_KEY) == 2
    assert 0 not in router.group([("k", b"")] * 5)


# -- explicit hash keys --------------------------------------------------------


@given(hash_keys)
def test_explicit_hash_key_parses_every_value_in_range(value: int) -> None:
    assert parse_explicit_hash_key(str(value)) == value


@pytest.mark.parametrize(
    "value",
    ["", "-1", "+1", "01", " 1", "1 ", "1.5", "1e3", "0x1f", "abc", "1_0", "\uff11", "9" * 40],
)
def test_malformed_explicit_hash_key_is_rejected(value: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        parse_explicit_hash_key(value)
    message = info.value.message
    assert "ExplicitHashKey" in message
    assert repr(value) in message or value in message
    assert str(MAX_HASH_KEY) in message  # says what would be valid


@pytest.mark.parametrize("value", [MAX_HASH_KEY + 1, 10**39 - 1, 10**38 * 5])
def test_out_of_range_explicit_hash_key_is_rejected(value: int) -> None:
    with pytest.raises(InvalidArgumentError, match="out of range") as info:
        parse_explicit_hash_key(str(value))
    assert str(value) in info.value.message


@pytest.mark.parametrize("value", [None, 12, 1.0, b"12"])
def test_non_string_explicit_hash_key_is_rejected(value: object) -> None:
    with pytest.raises(InvalidArgumentError, match="ExplicitHashKey"):
        parse_explicit_hash_key(value)


def test_router_validates_explicit_hash_keys() -> None:
    router = ShardRouter(_stream(4).shards)
    with pytest.raises(InvalidArgumentError, match="out of range"):
        router.shard_for_key("k", str(MAX_HASH_KEY + 1))
    with pytest.raises(InvalidArgumentError, match="not valid"):
        router.shard_for_key("k", "-5")


# -- partition keys ------------------------------------------------------------


@given(partition_keys)
def test_valid_partition_keys_pass(key: str) -> None:
    assert validate_partition_key(key) == key


def test_partition_key_length_is_counted_in_characters() -> None:
    assert validate_partition_key("é" * 256) == "é" * 256  # 512 UTF-8 bytes, 256 characters
    assert validate_partition_key("x") == "x"


@pytest.mark.parametrize(("key", "length"), [("", 0), ("k" * 257, 257), ("é" * 300, 300)])
def test_partition_key_of_wrong_length_is_rejected(key: str, length: int) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        validate_partition_key(key)
    assert "1 to 256 characters" in info.value.message
    assert f"got {length} characters" in info.value.message


@pytest.mark.parametrize("key", [None, 5, b"key"])
def test_non_string_partition_key_is_rejected(key: object) -> None:
    with pytest.raises(InvalidArgumentError, match=f"got {type(key).__name__}"):
        validate_partition_key(key)


@pytest.mark.parametrize("key", ["a\ud800b", "\udfff"])
def test_partition_key_with_a_lone_surrogate_is_rejected(key: str) -> None:
    # It has no UTF-8 form, so no MD5 of its UTF-8 bytes: refuse it by name, never crash.
    with pytest.raises(InvalidArgumentError, match="lone surrogate"):
        validate_partition_key(key)
    router = ShardRouter(_stream(2).shards)
    with pytest.raises(InvalidArgumentError, match="PartitionKey"):
        router.group([("fine", b""), (key, b"")])
    with pytest.raises(InvalidArgumentError, match="PartitionKey"):
        router.shard_for_key(key)


@pytest.mark.parametrize("key", ["", "k" * 257, None, 7])
def test_group_and_shard_for_key_reject_invalid_partition_keys(key: object) -> None:
    router = ShardRouter(_stream(3).shards)
    with pytest.raises(InvalidArgumentError, match="PartitionKey"):
        router.group([("fine", b""), (key, b"")])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match="PartitionKey"):
        router.shard_for_key(key)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="PartitionKey"):
        router.shard_for_key(key, "5")  # type: ignore[arg-type]


def test_even_ranges_match_the_router() -> None:
    ranges = even_ranges(5)
    router = ShardRouter(_stream(5).shards)
    for i, r in enumerate(ranges):
        assert router.shard_for_hash(r.start) == i
        assert router.shard_for_hash(r.end) == i
