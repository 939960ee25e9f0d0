"""The catalog's pure transitions: create, split, merge, uniform scaling, retention."""

from __future__ import annotations

import itertools

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from broker.errors import (
    InvalidArgumentError,
    LimitExceededError,
    ResourceInUseError,
    ResourceNotFoundError,
)
from broker.hashing import ShardRouter, even_ranges
from broker.log import catalog
from broker.model import MAX_HASH_KEY, HashKeyRange, Shard, StreamDescription, StreamStatus

MAX_SHARDS = 64


def ending(index: int) -> int:
    """A fake 'offset of the last record' per shard, so closing records something checkable."""
    return 1000 + 7 * index


def _open_sorted(desc: StreamDescription) -> list[Shard]:
    return sorted(desc.open_shards, key=lambda s: s.hash_range.start)


def assert_tiles_hash_space(ranges: list[HashKeyRange]) -> None:
    """Sorted ranges cover 0..2^128-1 exactly: no gap, no overlap, none empty."""
    assert ranges, "no ranges"
    assert ranges[0].start == 0
    assert ranges[-1].end == MAX_HASH_KEY
    for r in ranges:
        assert r.start <= r.end
    for a, b in itertools.pairwise(ranges):
        assert b.start == a.end + 1


def assert_round_trips(desc: StreamDescription) -> None:
    record = msgpack.unpackb(msgpack.packb(catalog.to_record(desc)))
    assert catalog.from_record(record) == desc


# -- even split ------------------------------------------------------------------


@given(st.integers(1, 4096))
def test_even_split_covers_the_hash_space(count: int) -> None:
    ranges = even_ranges(count)
    assert len(ranges) == count
    assert_tiles_hash_space(ranges)
    step = (MAX_HASH_KEY + 1) // count
    for i, r in enumerate(ranges[:-1]):
        assert r == HashKeyRange(i * step, (i + 1) * step - 1)
    # The last shard absorbs the remainder, less than one shard's share more.
    assert 0 <= (ranges[-1].end - ranges[-1].start + 1) - step < count


@pytest.mark.parametrize("count", [1, 2, 3, 7, 1024, 1 << 16])
def test_even_split_known_counts(count: int) -> None:
    ranges = even_ranges(count)
    assert_tiles_hash_space(ranges)
    assert ranges[-1].end == 340282366920938463463374607431768211455


@pytest.mark.parametrize("count", [0, -1])
def test_even_split_refuses_no_shards(count: int) -> None:
    with pytest.raises(InvalidArgumentError, match="ShardCount"):
        even_ranges(count)


@given(st.integers(1, 256))
def test_new_stream(count: int) -> None:
    desc = catalog.new_stream("orders", 9, count, 1234, max_shards=256, retention_hours=48)
    assert (desc.name, desc.incarnation, desc.created_ms) == ("orders", 9, 1234)
    assert desc.retention_hours == 48
    assert desc.status is StreamStatus.ACTIVE
    assert desc.next_shard_index == count
    assert [s.index for s in desc.shards] == list(range(count))
    assert [s.hash_range for s in desc.shards] == even_ranges(count)
    assert all(s.is_open and s.parents == () and s.created_ms == 1234 for s in desc.shards)
    assert_round_trips(desc)


@pytest.mark.parametrize("count", [0, 17, -3, True, 2.0, "4", None])
def test_new_stream_refuses_bad_shard_counts(count: object) -> None:
    with pytest.raises(InvalidArgumentError, match="ShardCount"):
        catalog.new_stream("s", 1, count, 0, max_shards=16)  # type: ignore[arg-type]


# -- split ---------------------------------------------------------------------


def test_split_children_and_parent() -> None:
    desc = catalog.new_stream("s", 1, 2, 0, max_shards=8)
    parent = desc.shard(1)
    key = parent.hash_range.start + 12345
    after = catalog.split(desc, 1, key, 50, ending, max_shards=8)
    closed = after.shard(1)
    assert not closed.is_open
    assert closed.ending_offset == ending(1)
    assert closed.hash_range == parent.hash_range
    lower, upper = after.shard(2), after.shard(3)
    # The lower half gets the first new index.
    assert lower.hash_range == HashKeyRange(parent.hash_range.start, key - 1)
    assert upper.hash_range == HashKeyRange(key, parent.hash_range.end)
    assert lower.parents == upper.parents == (1,)
    assert lower.created_ms == upper.created_ms == 50
    assert after.next_shard_index == 4
    assert after.shard(0) == desc.shard(0)
    assert {s.index for s in after.children_of(1)} == {2, 3}


def test_strict_split_key_rule() -> None:
    # Kinesis: start + 1 < NewStartingHashKey < end.
    desc = catalog.new_stream("s", 1, 4, 0, max_shards=8)
    shard = desc.shard(2)
    low, high = shard.hash_range.start, shard.hash_range.end
    for bad in (low - 1, low, low + 1, high, high + 1):
        with pytest.raises(InvalidArgumentError) as info:
            catalog.split(desc, 2, bad, 0, ending, max_shards=8)
        message = info.value.message
        assert str(bad) in message and shard.shard_id in message
    for good in (low + 2, high - 1):
        after = catalog.split(desc, 2, good, 0, ending, max_shards=8)
        assert [s.hash_range.start for s in after.children_of(2)] == [low, good]


def test_lenient_split_allows_any_non_empty_children() -> None:
    desc = catalog.new_stream("s", 1, 1, 0, max_shards=8)
    after = catalog.split(desc, 0, 1, 0, ending, max_shards=8, strict=False)
    assert [s.hash_range for s in after.open_shards] == [
        HashKeyRange(0, 0),
        HashKeyRange(1, MAX_HASH_KEY),
    ]
    with pytest.raises(InvalidArgumentError):
        catalog.split(desc, 0, 0, 0, ending, max_shards=8, strict=False)
    with pytest.raises(InvalidArgumentError):
        catalog.split(desc, 0, MAX_HASH_KEY + 1, 0, ending, max_shards=8, strict=False)


def test_split_errors() -> None:
    desc = catalog.new_stream("s", 1, 2, 0, max_shards=2)
    with pytest.raises(LimitExceededError, match="more than 2 open shards"):
        catalog.split(desc, 0, 1 << 100, 0, ending, max_shards=2)
    with pytest.raises(ResourceNotFoundError, match="shardId-000000000009"):
        catalog.split(desc, 9, 1 << 100, 0, ending, max_shards=8)
    after = catalog.split(desc, 0, 1 << 100, 0, ending, max_shards=8)
    with pytest.raises(ResourceInUseError, match="closed"):
        catalog.split(after, 0, 1 << 90, 0, ending, max_shards=8)


# -- merge ---------------------------------------------------------------------


@pytest.mark.parametrize("swap", [False, True])
def test_merge_adjacent_shards(swap: bool) -> None:
    desc = catalog.new_stream("s", 1, 3, 0, max_shards=8)
    a, b = (2, 1) if swap else (1, 2)
    after = catalog.merge(desc, a, b, 77, ending)
    child = after.shard(3)
    assert child.hash_range == HashKeyRange(
        desc.shard(1).hash_range.start, desc.shard(2).hash_range.end
    )
    assert (child.parent, child.adjacent_parent) == (a, b)
    assert child.created_ms == 77
    assert after.shard(1).ending_offset == ending(1)
    assert after.shard(2).ending_offset == ending(2)
    assert after.next_shard_index == 4
    assert_tiles_hash_space([s.hash_range for s in _open_sorted(after)])


def test_merge_errors() -> None:
    desc = catalog.new_stream("s", 1, 3, 0, max_shards=8)
    with pytest.raises(InvalidArgumentError, match="not adjacent"):
        catalog.merge(desc, 0, 2, 0, ending)
    with pytest.raises(InvalidArgumentError, match="must differ"):
        catalog.merge(desc, 1, 1, 0, ending)
    with pytest.raises(ResourceNotFoundError):
        catalog.merge(desc, 1, 5, 0, ending)
    merged = catalog.merge(desc, 0, 1, 0, ending)
    with pytest.raises(ResourceInUseError, match="closed"):
        catalog.merge(merged, 1, 2, 0, ending)


# -- uniform scaling -----------------------------------------------------------


@given(st.integers(1, 32), st.data())
def test_scale_uniformly_from_even_shards(current: int, data: st.DataObject) -> None:
    target = data.draw(st.integers((current + 1) // 2, min(2 * current, MAX_SHARDS)))
    desc = catalog.new_stream("s", 1, current, 0, max_shards=MAX_SHARDS)
    after = catalog.scale_uniformly(desc, target, 5, ending, max_shards=MAX_SHARDS)
    assert [s.hash_range for s in _open_sorted(after)] == even_ranges(target)
    assert all(len(s.parents) <= 2 for s in after.shards)


@pytest.mark.parametrize(("current", "target"), [(4, 9), (4, 1), (5, 2), (1, 3), (10, 4)])
def test_scale_outside_half_to_double_is_refused(current: int, target: int) -> None:
    desc = catalog.new_stream("s", 1, current, 0, max_shards=MAX_SHARDS)
    with pytest.raises(InvalidArgumentError, match="between half"):
        catalog.scale_uniformly(desc, target, 0, ending, max_shards=MAX_SHARDS)


@pytest.mark.parametrize(("current", "target"), [(4, 8), (4, 2), (5, 3), (1, 2), (3, 3)])
def test_scale_at_the_bounds_is_allowed(current: int, target: int) -> None:
    desc = catalog.new_stream("s", 1, current, 0, max_shards=MAX_SHARDS)
    after = catalog.scale_uniformly(desc, target, 0, ending, max_shards=MAX_SHARDS)
    assert [s.hash_range for s in _open_sorted(after)] == even_ranges(target)


@pytest.mark.parametrize("target", [0, -2, True, 2.5, "4"])
def test_scale_refuses_non_positive_or_non_integer_targets(target: object) -> None:
    desc = catalog.new_stream("s", 1, 2, 0, max_shards=MAX_SHARDS)
    with pytest.raises(InvalidArgumentError, match="TargetShardCount"):
        catalog.scale_uniformly(desc, target, 0, ending, max_shards=MAX_SHARDS)  # type: ignore[arg-type]


def test_scale_beyond_the_shard_limit_is_refused() -> None:
    desc = catalog.new_stream("s", 1, 4, 0, max_shards=6)
    with pytest.raises(LimitExceededError, match="exceeds the limit of 6"):
        catalog.scale_uniformly(desc, 7, 0, ending, max_shards=6)


# -- every transition keeps the invariants -------------------------------------


class CatalogMachine(RuleBasedStateMachine):
    """Random splits, merges and scalings; after each, the shard map must stay sound."""

    def __init__(self) -> None:
        super().__init__()
        self.desc: StreamDescription
        self.closed: dict[int, Shard] = {}

    @initialize(count=st.integers(1, 8))
    def create(self, count: int) -> None:
        self.desc = catalog.new_stream("s", 3, count, 0, max_shards=MAX_SHARDS)

    def _step(self, after: StreamDescription) -> None:
        before = self.desc
        # Shards are never dropped or re-indexed; a closed shard never changes again.
        before_by_index = {s.index: s for s in before.shards}
        after_by_index = {s.index: s for s in after.shards}
        assert set(before_by_index) <= set(after_by_index)
        for index, shard in self.closed.items():
            assert after_by_index[index] == shard
        for index, shard in before_by_index.items():
            now = after_by_index[index]
            assert now.hash_range == shard.hash_range
            assert now.parents == shard.parents
            if not now.is_open and shard.is_open:
                assert now.ending_offset == ending(index)
        new = sorted(set(after_by_index) - set(before_by_index))
        assert new == list(range(before.next_shard_index, after.next_shard_index))
        self.desc = after
        self.closed = {s.index: s for s in after.shards if not s.is_open}

    @rule(data=st.data())
    def split(self, data: st.DataObject) -> None:
        candidates = [
            s for s in self.desc.open_shards if s.hash_range.end - s.hash_range.start >= 3
        ]
        if not candidates or len(self.desc.open_shards) >= MAX_SHARDS:
            return
        shard = data.draw(st.sampled_from(candidates))
        low, high = shard.hash_range.start, shard.hash_range.end
        key = data.draw(
            st.one_of(
                st.integers(low + 2, high - 1),
                st.sampled_from([low + 2, high - 1, max(low + 2, (low + high) // 2)]),
            )
        )
        after = catalog.split(self.desc, shard.index, key, 1, ending, max_shards=MAX_SHARDS)
        children = after.children_of(shard.index)
        assert [c.hash_range for c in children] == [
            HashKeyRange(low, key - 1),
            HashKeyRange(key, high),
        ]
        self._step(after)

    @rule(data=st.data())
    def merge(self, data: st.DataObject) -> None:
        shards = _open_sorted(self.desc)
        if len(shards) < 2:
            return
        i = data.draw(st.integers(0, len(shards) - 2))
        a, b = shards[i], shards[i + 1]
        if data.draw(st.booleans()):
            a, b = b, a
        after = catalog.merge(self.desc, a.index, b.index, 2, ending)
        (child,) = after.children_of(a.index)
        assert child.parents == (a.index, b.index)
        assert child.hash_range.start == min(a.hash_range.start, b.hash_range.start)
        assert child.hash_range.end == max(a.hash_range.end, b.hash_range.end)
        self._step(after)

    @rule(data=st.data())
    def scale(self, data: st.DataObject) -> None:
        current = len(self.desc.open_shards)
        low, high = (current + 1) // 2, min(2 * current, MAX_SHARDS)
        if low > high:
            return
        target = data.draw(st.integers(low, high))
        after = catalog.scale_uniformly(self.desc, target, 3, ending, max_shards=MAX_SHARDS)
        assert len(after.open_shards) == target
        assert [s.hash_range for s in _open_sorted(after)] == even_ranges(target)
        self._step(after)

    @rule(hours=st.integers(24, 8760))
    def retention(self, hours: int) -> None:
        increase = hours >= self.desc.retention_hours
        after = catalog.set_retention(self.desc, hours, increase=increase)
        assert after.retention_hours == hours
        assert after.shards == self.desc.shards
        self._step(after)

    @invariant()
    def open_shards_tile_the_hash_space(self) -> None:
        assert_tiles_hash_space([s.hash_range for s in _open_sorted(self.desc)])
        ShardRouter(self.desc.shards)  # the router accepts the map too

    @invariant()
    def lineage_is_sound(self) -> None:
        by_index = {s.index: s for s in self.desc.shards}
        assert len(by_index) == len(self.desc.shards)
        assert max(by_index) < self.desc.next_shard_index
        for shard in self.desc.shards:
            assert len(shard.parents) <= 2
            for parent in shard.parents:
                assert parent in by_index, "a child names a parent that does not exist"
                assert not by_index[parent].is_open, "a child's parent is still open"
                assert parent < shard.index
            if len(shard.parents) == 1:
                assert by_index[shard.parents[0]].hash_range.start <= shard.hash_range.start
                assert shard.hash_range.end <= by_index[shard.parents[0]].hash_range.end
        for shard in self.desc.shards:
            if shard.is_open:
                continue
            # A closed parent's range is exactly covered by its children.
            children = sorted(self.desc.children_of(shard.index), key=lambda s: s.hash_range.start)
            assert children, f"closed shard {shard.index} has no children"
            if len(children) == 2:  # a split
                assert children[0].hash_range.start == shard.hash_range.start
                assert children[1].hash_range.end == shard.hash_range.end
                assert children[0].hash_range.end + 1 == children[1].hash_range.start
            else:  # a merge
                (child,) = children
                assert child.hash_range.start <= shard.hash_range.start
                assert shard.hash_range.end <= child.hash_range.end

    @invariant()
    def record_round_trips(self) -> None:
        assert_round_trips(self.desc)


TestCatalogMachine = CatalogMachine.TestCase
TestCatalogMachine.settings = settings(max_examples=60, stateful_step_count=20, deadline=None)


# -- retention and records -------------------------------------------------------


def test_retention_direction_and_bounds() -> None:
    desc = catalog.new_stream("s", 1, 1, 0, max_shards=4, retention_hours=48)
    assert catalog.set_retention(desc, 72, increase=True).retention_hours == 72
    assert catalog.set_retention(desc, 24, increase=False).retention_hours == 24
    assert catalog.set_retention(desc, 48, increase=True).retention_hours == 48
    with pytest.raises(InvalidArgumentError, match="use DecreaseStreamRetentionPeriod"):
        catalog.set_retention(desc, 24, increase=True)
    with pytest.raises(InvalidArgumentError, match="use IncreaseStreamRetentionPeriod"):
        catalog.set_retention(desc, 72, increase=False)
    for bad in (23, 8761, 0):
        with pytest.raises(InvalidArgumentError, match="between 24 and 8760"):
            catalog.set_retention(desc, bad, increase=bad > 48)
    with pytest.raises(InvalidArgumentError, match="must be an integer"):
        catalog.check_retention(True)
    with pytest.raises(InvalidArgumentError, match="out of range"):
        catalog.new_stream("s", 1, 1, 0, max_shards=4, retention_hours=8761)


def test_record_keeps_128_bit_keys_and_lineage() -> None:
    desc = catalog.new_stream("s", 4, 2, 10, max_shards=8)
    desc = catalog.split(desc, 1, MAX_HASH_KEY - 5, 11, ending, max_shards=8)
    desc = catalog.merge(desc, 0, 2, 12, ending)
    record = catalog.to_record(desc)
    # msgpack has no 128-bit integers: the stored form must pack.
    packed = msgpack.packb(record)
    back = catalog.from_record(msgpack.unpackb(packed))
    assert back == desc
    assert back.shard(3).hash_range.end == MAX_HASH_KEY
    assert back.shard(4).parents == (0, 2)
    assert back.shard(0).ending_offset == ending(0)
