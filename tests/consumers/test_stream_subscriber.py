"""Shard lineage: ``Lineage`` (pure) and ``StreamSubscriber`` against a scripted source."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from broker.client import EndEvent, HeartbeatEvent, RecordsEvent
from broker.errors import InvalidArgumentError, ResourceNotFoundError
from consumers.subscriber import Lineage, ShardEvent, StreamSubscriber
from tests.consumers.fakes import HOLD, FakeSource, Refuse, end, heartbeat, records, shard

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:1"
TRIM = {"Type": "TRIM_HORIZON"}
LIMIT_S = 30

# -- Lineage ------------------------------------------------------------------------


def test_the_children_of_a_split_start_once_their_parent_ended() -> None:
    lineage = Lineage()
    for shard_id, parents in [("P", ()), ("C1", ("P",)), ("C2", ("P",))]:
        lineage.follow(shard_id, parents)
    assert lineage.startable() == ["P"]
    assert lineage.startable() == []  # started once
    assert lineage.finish("P", [("C1", ("P",)), ("C2", ("P",))]) == ["C1", "C2"]
    assert lineage.active == {"C1", "C2"}


def test_a_merge_child_waits_for_both_parents() -> None:
    lineage = Lineage()
    lineage.follow("A", ())
    lineage.follow("B", ())
    assert lineage.startable() == ["A", "B"]
    assert lineage.finish("A", [("M", ("A", "B"))]) == []
    assert lineage.finish("B", [("M", ("A", "B"))]) == ["M"]


def test_parents_not_followed_do_not_hold_children_back() -> None:
    lineage = Lineage()
    lineage.follow("X", ("trimmed-away",))
    assert lineage.startable() == ["X"]
    assert lineage.unknown_parents([("M", ("X", "Y"))]) == {"Y"}


def test_adopt_follows_the_descendants_of_followed_shards_only() -> None:
    lineage = Lineage()
    lineage.follow("A", ())
    lineage.follow("C", ())
    lineage.startable()
    listing = [("Z", ("Q",)), ("M", ("A", "B")), ("B", ("C",)), ("A", ()), ("C", ())]
    lineage.adopt(listing)  # out of order on purpose: B makes M adoptable either way
    assert set(lineage.parents) == {"A", "C", "B", "M"}
    assert lineage.finish("A", [("M", ("A", "B"))]) == []  # B is followed and not ended
    assert lineage.finish("C", [("B", ("C",))]) == ["B"]
    assert lineage.finish("B", [("M", ("A", "B"))]) == ["M"]


# -- StreamSubscriber ------------------------------------------------------------------


async def collect(subscriber: StreamSubscriber, records_wanted: int) -> list[ShardEvent]:
    got: list[ShardEvent] = []
    count = 0
    with trio.fail_after(LIMIT_S):
        async for item in subscriber:
            got.append(item)
            if isinstance(item.event, RecordsEvent):
                count += len(item.event.records)
                if count >= records_wanted:
                    break
    return got


def data_of(items: list[ShardEvent]) -> list[tuple[str, bytes]]:
    return [
        (item.shard_id, r[2])
        for item in items
        if isinstance(item.event, RecordsEvent)
        for r in item.event.records
    ]


async def test_a_split_parent_is_read_to_its_end_before_its_children() -> None:
    start = {"Type": "AT_TIMESTAMP", "Timestamp": 5}
    source = FakeSource(shards=[shard("P", closed=True), shard("C1", "P"), shard("C2", "P")])
    source.script("P", [records(1, b"p1"), records(2, b"p2"), end(("C1", ["P"]), ("C2", ["P"]))])
    source.script("C1", [records(100, b"c1"), HOLD])
    source.script("C2", [records(200, b"c2"), HOLD])
    got: list[ShardEvent] = []
    async with StreamSubscriber(source, "s", ARN, start) as subscriber:
        with trio.fail_after(LIMIT_S):
            async for item in subscriber:
                got.append(item)
                if isinstance(item.event, EndEvent):
                    # Handed the parent's end: no child was subscribed before that.
                    assert source.calls_of("C1") == source.calls_of("C2") == []
                if len(data_of(got)) == 4:
                    break
    assert data_of(got)[:2] == [("P", b"p1"), ("P", b"p2")]
    assert sorted(data_of(got)[2:]) == [("C1", b"c1"), ("C2", b"c2")]
    assert source.filters == [{"Type": "AT_TIMESTAMP", "Timestamp": 5}]
    assert [c.position for c in source.calls_of("P")] == [start]
    assert [c.position for c in source.calls_of("C1")] == [TRIM]
    assert [c.position for c in source.calls_of("C2")] == [TRIM]
    assert source.open == 0


async def test_a_merge_child_starts_after_both_parents_ended() -> None:
    source = FakeSource(
        shards=[shard("A", closed=True), shard("B", closed=True), shard("M", "A", "B")]
    )
    b_may_end = trio.Event()
    source.script("A", [records(1, b"a"), end(("M", ["A", "B"]))])
    source.script("B", [records(10, b"b1"), b_may_end, records(11, b"b2"), end(("M", ["A", "B"]))])
    source.script("M", [records(20, b"m"), HOLD])
    ends: list[str] = []
    got: list[ShardEvent] = []
    async with StreamSubscriber(source, "s", ARN, TRIM) as subscriber:
        with trio.fail_after(LIMIT_S):
            async for item in subscriber:
                got.append(item)
                if isinstance(item.event, EndEvent):
                    ends.append(item.shard_id)
                    assert source.calls_of("M") == []
                    b_may_end.set()
                if ("M", b"m") in data_of(got):
                    break
    assert ends == ["A", "B"]
    data = data_of(got)
    assert data[-1] == ("M", b"m")
    assert set(data[:-1]) == {("A", b"a"), ("B", b"b1"), ("B", b"b2")}
    assert [c.position for c in source.calls_of("M")] == [TRIM]
    assert source.filters == [None]  # TRIM_HORIZON: every shard, roots first


async def test_a_parent_created_after_the_listing_is_found_and_waited_for() -> None:
    # Listed at LATEST: A and C are open. Later C splits into B (and another), and A
    # merges with B into M. A's end names B, which was not listed: the follower lists
    # again, finds B descends from C (still being read), and M waits for B.
    source = FakeSource(shards=[shard("A"), shard("C")])
    c_may_end = trio.Event()
    source.script("A", [records(1, b"a"), end(("M", ["A", "B"]))])
    source.script("C", [records(5, b"c"), c_may_end, end(("B", ["C"]), ("D", ["C"]))])
    source.script("B", [records(30, b"b"), end(("M", ["A", "B"]))])
    source.script("D", [HOLD])
    source.script("M", [records(40, b"m"), HOLD])
    got: list[ShardEvent] = []
    async with StreamSubscriber(source, "s", ARN, {"Type": "LATEST"}) as subscriber:
        with trio.fail_after(LIMIT_S):
            async for item in subscriber:
                got.append(item)
                if isinstance(item.event, EndEvent) and item.shard_id == "A":
                    # The split and merge happened since the first listing.
                    source.shards += [shard("B", "C"), shard("D", "C"), shard("M", "A", "B")]
                    c_may_end.set()
                if ("M", b"m") in data_of(got):
                    break
    data = data_of(got)
    assert data.index(("B", b"b")) < data.index(("M", b"m"))
    assert data.index(("C", b"c")) < data.index(("B", b"b"))
    assert source.filters == [{"Type": "AT_LATEST"}, None]
    assert [c.position for c in source.calls_of("A")] == [{"Type": "LATEST"}]
    assert [c.position for c in source.calls_of("B")] == [TRIM]


async def test_the_listing_is_read_to_its_last_page() -> None:
    names = [f"shardId-00000000000{i}" for i in range(5)]
    source = FakeSource(shards=[shard(n) for n in names])
    for i, name in enumerate(names):
        source.script(name, [records(i, name.encode()), HOLD])
    async with StreamSubscriber(source, "s", ARN, TRIM) as subscriber:
        got = await collect(subscriber, 5)
    assert sorted(shard_id for shard_id, _ in data_of(got)) == names


async def test_a_failing_shard_is_raised_from_the_iteration() -> None:
    source = FakeSource(shards=[shard("A"), shard("B")])
    source.script("A", [records(1, b"a"), HOLD])
    source.script("B", Refuse(ResourceNotFoundError("Stream s not found")))
    async with StreamSubscriber(source, "s", ARN, TRIM) as subscriber:
        with pytest.raises(ResourceNotFoundError), trio.fail_after(LIMIT_S):
            async for _ in subscriber:
                pass
    assert source.open == 0


async def test_iteration_ends_when_no_shard_is_left_to_follow() -> None:
    source = FakeSource(shards=[shard("P", closed=True), shard("C", "P", closed=True)])
    source.script("P", [records(1, b"p"), end(("C", ["P"]))])
    source.script("C", [heartbeat(7), EndEvent([])])
    async with StreamSubscriber(source, "s", ARN, TRIM, heartbeats=True) as subscriber:
        with trio.fail_after(LIMIT_S):
            got = [item async for item in subscriber]
    kinds = [(item.shard_id, type(item.event)) for item in got]
    assert kinds == [
        ("P", RecordsEvent),
        ("P", EndEvent),
        ("C", HeartbeatEvent),
        ("C", EndEvent),
    ]


async def test_heartbeats_are_left_out_unless_asked_for() -> None:
    source = FakeSource(shards=[shard("A")])
    source.script("A", [heartbeat(1), records(2, b"a"), HOLD])
    async with StreamSubscriber(source, "s", ARN, TRIM) as subscriber:
        got = await collect(subscriber, 1)
    assert [type(item.event) for item in got] == [RecordsEvent]


@pytest.mark.parametrize(
    "position",
    [
        {"Type": "AT_SEQUENCE_NUMBER", "SequenceNumber": "1"},
        {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": "1"},
    ],
)
def test_a_sequence_number_position_is_for_one_shard_only(position: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        StreamSubscriber(FakeSource(), "s", ARN, position)
