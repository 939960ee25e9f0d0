"""The typed results read from wire maps: every field, absent ones, unknown ones ignored."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.client.results import (
    ChildShard,
    EnhancedMetrics,
    GetRecordsResult,
    GetShardIteratorResult,
    HashKeyRange,
    ListShardsResult,
    ListStreamsResult,
    PutRecordResult,
    PutRecordsResult,
    PutRecordsResultEntry,
    Record,
    SequenceNumberRange,
    Shard,
    StreamDescription,
    StreamDescriptionSummary,
    StreamModeDetails,
    StreamSummary,
    UpdateShardCountResult,
    datetime_from_ms,
)

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/s"
#: Added to every map below: a later broker may send fields this client does not know.
FUTURE = {"FieldFromTheFuture": {"Nested": [1, 2]}, "AnotherOne": None}

HASH_MAP = {"StartingHashKey": "0", "EndingHashKey": str((1 << 128) - 1), **FUTURE}
HASHES = HashKeyRange("0", str((1 << 128) - 1))
OPEN_MAP = {
    "ShardId": "shardId-000000000003",
    "HashKeyRange": HASH_MAP,
    "SequenceNumberRange": {"StartingSequenceNumber": "300", **FUTURE},
    **FUTURE,
}
CLOSED_MAP = {
    "ShardId": "shardId-000000000004",
    "ParentShardId": "shardId-000000000001",
    "AdjacentParentShardId": "shardId-000000000002",
    "HashKeyRange": HASH_MAP,
    "SequenceNumberRange": {"StartingSequenceNumber": "400", "EndingSequenceNumber": "407"},
}
OPEN = Shard("shardId-000000000003", HASHES, SequenceNumberRange("300"))
CLOSED = Shard(
    "shardId-000000000004",
    HASHES,
    SequenceNumberRange("400", "407"),
    parent_shard_id="shardId-000000000001",
    adjacent_parent_shard_id="shardId-000000000002",
)
SUMMARY_MAP = {
    "StreamName": "s",
    "StreamARN": ARN,
    "StreamStatus": "ACTIVE",
    "StreamModeDetails": {"StreamMode": "PROVISIONED", **FUTURE},
    "RetentionPeriodHours": 48,
    "StreamCreationTimestamp": 1_700_000_000_000,
    "EnhancedMonitoring": [{"ShardLevelMetrics": ["IncomingBytes"], **FUTURE}],
    "EncryptionType": "NONE",
    **FUTURE,
}


def test_shards_open_and_closed() -> None:
    assert HashKeyRange.from_wire(HASH_MAP) == HASHES
    assert Shard.from_wire(OPEN_MAP) == OPEN
    assert OPEN.is_open and OPEN.parent_shard_id is None
    assert Shard.from_wire(CLOSED_MAP) == CLOSED
    assert not CLOSED.is_open
    child = {
        "ShardId": "shardId-000000000005",
        "ParentShards": ["shardId-000000000003", "shardId-000000000004"],
        "HashKeyRange": HASH_MAP,
        **FUTURE,
    }
    assert ChildShard.from_wire(child) == ChildShard(
        "shardId-000000000005", ["shardId-000000000003", "shardId-000000000004"], HASHES
    )


def test_stream_description_and_summary() -> None:
    described = StreamDescription.from_wire(
        {**SUMMARY_MAP, "Shards": [OPEN_MAP, CLOSED_MAP], "HasMoreShards": True}
    )
    assert described == StreamDescription(
        stream_name="s",
        stream_arn=ARN,
        stream_status="ACTIVE",
        shards=[OPEN, CLOSED],
        has_more_shards=True,
        retention_period_hours=48,
        stream_creation_timestamp=1_700_000_000_000,
        enhanced_monitoring=[EnhancedMetrics(["IncomingBytes"])],
        stream_mode_details=StreamModeDetails("PROVISIONED"),
        encryption_type="NONE",
    )
    summary = StreamDescriptionSummary.from_wire(
        {**SUMMARY_MAP, "OpenShardCount": 3, "ConsumerCount": 0}
    )
    assert (summary.stream_name, summary.open_shard_count, summary.consumer_count) == ("s", 3, 0)
    assert summary.retention_period_hours == 48
    assert summary.stream_mode_details == StreamModeDetails("PROVISIONED")
    # Kinesis' optional fields may be absent.
    bare = {
        k: v for k, v in SUMMARY_MAP.items() if k not in ("StreamModeDetails", "EncryptionType")
    }
    sparse = StreamDescriptionSummary.from_wire({**bare, "OpenShardCount": 1})
    assert (sparse.stream_mode_details, sparse.encryption_type, sparse.consumer_count) == (
        None,
        None,
        None,
    )


def test_listings() -> None:
    listed = ListStreamsResult.from_wire(
        {
            "StreamNames": ["a", "s"],
            "HasMoreStreams": True,
            "StreamSummaries": [
                {k: SUMMARY_MAP[k] for k in ("StreamName", "StreamARN", "StreamStatus")},
            ],
            "NextToken": "token",
            **FUTURE,
        }
    )
    assert listed == ListStreamsResult(
        ["a", "s"], True, [StreamSummary("s", ARN, "ACTIVE")], "token"
    )
    last = ListStreamsResult.from_wire({"StreamNames": [], "HasMoreStreams": False})
    assert (last.stream_summaries, last.next_token) == ([], None)
    shards = ListShardsResult.from_wire({"Shards": [OPEN_MAP, CLOSED_MAP], **FUTURE})
    assert shards == ListShardsResult([OPEN, CLOSED], None)
    assert ListShardsResult.from_wire({"NextToken": "t"}) == ListShardsResult([], "t")


def test_writes_and_update_shard_count() -> None:
    assert PutRecordResult.from_wire(
        {
            "ShardId": "shardId-000000000000",
            "SequenceNumber": "7",
            "EncryptionType": "NONE",
            **FUTURE,
        }
    ) == PutRecordResult("shardId-000000000000", "7", "NONE")
    mixed = PutRecordsResult.from_wire(
        {
            "FailedRecordCount": 1,
            "Records": [
                {"ShardId": "shardId-000000000000", "SequenceNumber": "7", **FUTURE},
                {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow"},
            ],
            "EncryptionType": "NONE",
        }
    )
    ok, failed = mixed.records
    assert mixed.failed_record_count == 1
    assert ok == PutRecordsResultEntry("shardId-000000000000", "7")
    assert ok.ok and not ok.failed
    assert failed == PutRecordsResultEntry(
        None, None, "ProvisionedThroughputExceededException", "slow"
    )
    assert failed.failed and not failed.ok
    # Without FailedRecordCount (optional in Kinesis), it is counted.
    counted = PutRecordsResult.from_wire({"Records": [{"ErrorCode": "InternalFailure"}]})
    assert (counted.failed_record_count, counted.encryption_type) == (1, None)
    assert UpdateShardCountResult.from_wire(
        {
            "StreamName": "s",
            "StreamARN": ARN,
            "CurrentShardCount": 2,
            "TargetShardCount": 3,
            **FUTURE,
        }
    ) == UpdateShardCountResult("s", ARN, 2, 3)


def test_reads() -> None:
    assert GetShardIteratorResult.from_wire({"ShardIterator": "abc", **FUTURE}).shard_iterator == (
        "abc"
    )
    wire_record = {
        "SequenceNumber": "12",
        "ApproximateArrivalTimestamp": 1_700_000_000_123,
        "Data": b"\x00\xff",
        "PartitionKey": "k",
        **FUTURE,
    }
    record = Record("12", 1_700_000_000_123, b"\x00\xff", "k")
    assert Record.from_wire(wire_record) == record
    assert record.arrival == datetime(2023, 11, 14, 22, 13, 20, 123_000, tzinfo=UTC)
    page = GetRecordsResult.from_wire(
        {"Records": [wire_record], "NextShardIterator": "next", "MillisBehindLatest": 9, **FUTURE}
    )
    assert page == GetRecordsResult([record], "next", 9, [])
    child_map = {"ShardId": "shardId-000000000001", "ParentShards": ["p"], "HashKeyRange": HASH_MAP}
    end = GetRecordsResult.from_wire(
        {
            "Records": [],
            "NextShardIterator": None,
            "MillisBehindLatest": 0,
            "ChildShards": [child_map],
        }
    )
    assert end == GetRecordsResult([], None, 0, [ChildShard("shardId-000000000001", ["p"], HASHES)])


def test_results_are_immutable() -> None:
    record = Record("1", 0, b"", "k")
    with pytest.raises(AttributeError):
        record.data = b"x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        OPEN.shard_id = "other"  # type: ignore[misc]
    entry = PutRecordsResultEntry("s", "1")
    with pytest.raises(AttributeError):
        entry.error_code = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("parse", "body"),
    [
        (Shard.from_wire, {"ShardId": "shardId-000000000000"}),
        (GetRecordsResult.from_wire, {"Records": [], "MillisBehindLatest": 0}),
        (GetRecordsResult.from_wire, {"Records": [{}], "NextShardIterator": None}),
        (PutRecordsResult.from_wire, {"FailedRecordCount": 0, "Records": [{"ShardId": "s"}]}),
        (ListStreamsResult.from_wire, {"HasMoreStreams": False}),
    ],
)
def test_a_missing_required_field_raises_key_error(parse: Any, body: dict[str, Any]) -> None:
    with pytest.raises(KeyError):
        parse(body)


def test_datetime_from_ms_is_exact() -> None:
    assert datetime_from_ms(0) == datetime(1970, 1, 1, tzinfo=UTC)
    # 2^53 + 1 ms is not a float; the conversion must not go through one.
    late = datetime_from_ms(253_402_300_799_999)
    assert (late.year, late.microsecond) == (9999, 999_000)


# -- property tests: generated wire maps, through msgpack as on the wire ------------------

unknown_fields = st.dictionaries(
    st.text(max_size=8).map(lambda k: "Future" + k),
    st.none()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.text(max_size=8)
    | st.lists(st.booleans(), max_size=3),
    max_size=3,
)
sequence_numbers = st.integers(0, (1 << 128) - 1).map(str)
wire_records = st.fixed_dictionaries(
    {
        "SequenceNumber": sequence_numbers,
        "ApproximateArrivalTimestamp": st.integers(0, 1 << 53),
        "Data": st.binary(max_size=64),
        "PartitionKey": st.text(min_size=1, max_size=256),
    }
)
hash_ranges = st.fixed_dictionaries(
    {"StartingHashKey": sequence_numbers, "EndingHashKey": sequence_numbers}
)
child_shards = st.fixed_dictionaries(
    {
        "ShardId": st.integers(0, 10**12 - 1).map(lambda i: f"shardId-{i:012d}"),
        "ParentShards": st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=2),
        "HashKeyRange": hash_ranges,
    }
)


def on_the_wire(body: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = msgpack.unpackb(msgpack.packb(body), raw=False)
    return decoded


@st.composite
def get_records_bodies(draw: st.DrawFn) -> dict[str, Any]:
    records = draw(st.lists(st.tuples(wire_records, unknown_fields), max_size=20))
    end = draw(st.booleans())
    body: dict[str, Any] = {
        "Records": [{**extra, **record} for record, extra in records],
        "NextShardIterator": None if end else draw(st.text(min_size=1, max_size=512)),
        "MillisBehindLatest": draw(st.integers(0, 1 << 40)),
    }
    if end:
        body["ChildShards"] = draw(st.lists(child_shards, max_size=2))
    return {**draw(unknown_fields), **body}


@given(get_records_bodies())
def test_get_records_result_round_trip(body: dict[str, Any]) -> None:
    result = GetRecordsResult.from_wire(on_the_wire(body))
    assert [
        (r.sequence_number, r.approximate_arrival_timestamp, r.data, r.partition_key)
        for r in result.records
    ] == [
        (r["SequenceNumber"], r["ApproximateArrivalTimestamp"], r["Data"], r["PartitionKey"])
        for r in body["Records"]
    ]
    assert all(type(r) is Record and type(r.data) is bytes for r in result.records)
    assert result.next_shard_iterator == body["NextShardIterator"]
    assert result.millis_behind_latest == body["MillisBehindLatest"]
    assert result.child_shards == [
        ChildShard(c["ShardId"], c["ParentShards"], HashKeyRange.from_wire(c["HashKeyRange"]))
        for c in body.get("ChildShards", [])
    ]


ok_entries = st.fixed_dictionaries(
    {"ShardId": st.text(min_size=1, max_size=20), "SequenceNumber": sequence_numbers}
)
failed_entries = st.fixed_dictionaries(
    {
        "ErrorCode": st.sampled_from(["ProvisionedThroughputExceededException", "InternalFailure"]),
        "ErrorMessage": st.text(max_size=40),
    }
)


@st.composite
def put_records_bodies(draw: st.DrawFn) -> dict[str, Any]:
    entries = draw(st.lists(st.tuples(ok_entries | failed_entries, unknown_fields), max_size=30))
    records = [{**extra, **entry} for entry, extra in entries]
    body: dict[str, Any] = {"Records": records, "EncryptionType": "NONE"}
    if draw(st.booleans()):  # optional in Kinesis; always sent by shardline
        body["FailedRecordCount"] = sum("ErrorCode" in r for r in records)
    return {**draw(unknown_fields), **body}


@given(put_records_bodies())
def test_put_records_result_round_trip(body: dict[str, Any]) -> None:
    result = PutRecordsResult.from_wire(on_the_wire(body))
    assert result.failed_record_count == sum("ErrorCode" in r for r in body["Records"])
    assert result.encryption_type == "NONE"
    assert len(result.records) == len(body["Records"])
    for entry, wire in zip(result.records, body["Records"], strict=True):
        assert type(entry) is PutRecordsResultEntry
        assert entry.failed == ("ErrorCode" in wire) != entry.ok
        assert entry == PutRecordsResultEntry(
            wire.get("ShardId"),
            wire.get("SequenceNumber"),
            wire.get("ErrorCode"),
            wire.get("ErrorMessage"),
        )


@given(
    st.lists(
        st.tuples(
            st.integers(0, (1 << 128) - 20_000),
            st.lists(
                st.tuples(st.integers(0, 1 << 62), st.text(max_size=10), st.binary(max_size=20)),
                max_size=30,
            ),
        ),
        max_size=5,
    )
)
def test_compact_get_records_give_the_records_of_the_map_form(
    batches: list[tuple[int, list[tuple[int, str, bytes]]]],
) -> None:
    compact = {
        "Batches": [
            {"FirstSequenceNumber": str(first), "Records": [list(r) for r in records]}
            for first, records in batches
        ],
        "NextShardIterator": "it",
        "MillisBehindLatest": 3,
    }
    maps = {
        "Records": [
            {
                "SequenceNumber": str(first + i),
                "ApproximateArrivalTimestamp": arrival,
                "Data": data,
                "PartitionKey": key,
            }
            for first, records in batches
            for i, (arrival, key, data) in enumerate(records)
        ],
        "NextShardIterator": "it",
        "MillisBehindLatest": 3,
    }
    wire = msgpack.unpackb(msgpack.packb(compact))
    assert GetRecordsResult.from_wire(wire) == GetRecordsResult.from_wire(maps)
