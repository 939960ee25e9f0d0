"""Push events: msgpack's own bytes, round trips, any chunking, and named refusals."""

from __future__ import annotations

from typing import Any

import msgpack
import ormsgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import SerializationError
from broker.fanout import events as ev
from broker.fanout.events import (
    EndEvent,
    ErrorEvent,
    Event,
    EventDecoder,
    HeartbeatEvent,
    RecordsEvent,
)
from broker.log import batch as fmt
from broker.sequence import base

MAX_SEQUENCE = (1 << 128) - 1

record = st.tuples(
    st.one_of(st.integers(0, 127), st.integers(0, (1 << 64) - 1)),
    st.text(max_size=40),
    st.binary(max_size=300),
)
# Up to 40 records: fixarray (< 16) and array16 headers.
records_lists = st.lists(record, min_size=1, max_size=40)
# Decimal lengths on both sides of fixstr's 31-byte limit, and the extremes.
sequences = st.one_of(
    st.integers(0, 1000),
    st.integers(10**30 - 100, 10**31 + 100),
    st.integers(0, MAX_SEQUENCE),
    st.integers(MAX_SEQUENCE - 1000, MAX_SEQUENCE),
)
millis = st.one_of(st.integers(0, 200), st.integers(0, 1 << 63))
child_shard = st.fixed_dictionaries(
    {
        "ShardId": st.from_regex(r"shardId-[0-9]{12}", fullmatch=True),
        "ParentShards": st.lists(
            st.from_regex(r"shardId-[0-9]{12}", fullmatch=True), min_size=1, max_size=2
        ),
        "HashKeyRange": st.fixed_dictionaries(
            {
                "StartingHashKey": st.integers(0, MAX_SEQUENCE).map(str),
                "EndingHashKey": st.integers(0, MAX_SEQUENCE).map(str),
            }
        ),
    }
)
child_shards = st.lists(child_shard, min_size=1, max_size=3)


def _fit(first: int, count: int) -> int:
    """``first`` moved down so that ``count`` records from it stay within 128 bits."""
    return min(first, MAX_SEQUENCE - count + 1)


@st.composite
def records_events(draw: st.DrawFn) -> tuple[bytes, RecordsEvent]:
    recs = draw(records_lists)
    first = _fit(draw(sequences), len(recs))
    behind = draw(millis)
    encoded = ev.encode_records(first, ormsgpack.packb(recs), first + len(recs) - 1, behind)
    return encoded, RecordsEvent(first, [list(r) for r in recs], first + len(recs) - 1, behind)


@st.composite
def heartbeat_events(draw: st.DrawFn) -> tuple[bytes, HeartbeatEvent]:
    continuation, behind = draw(sequences), draw(millis)
    return ev.encode_heartbeat(continuation, behind), HeartbeatEvent(continuation, behind)


@st.composite
def end_events(draw: st.DrawFn) -> tuple[bytes, EndEvent]:
    children = draw(child_shards)
    return ev.encode_end(children), EndEvent(children)


@st.composite
def error_events(draw: st.DrawFn) -> tuple[bytes, ErrorEvent]:
    code = draw(st.sampled_from(["ResourceInUseException", "InternalFailureException"]))
    message = draw(st.text(max_size=200))
    return ev.encode_error(code, message), ErrorEvent(code, message)


any_event = st.one_of(records_events(), heartbeat_events(), end_events(), error_events())


def _decode_all(body: bytes) -> list[Event]:
    decoder = EventDecoder()
    out = decoder.feed(body)
    decoder.close()
    return out


# -- byte for byte ---------------------------------------------------------------


@given(recs=records_lists, first=sequences, behind=millis, as_view=st.booleans())
def test_encode_records_is_msgpack_of_the_map(
    recs: list[tuple[int, str, bytes]], first: int, behind: int, as_view: bool
) -> None:
    first = _fit(first, len(recs))
    last = first + len(recs) - 1
    payload: bytes | memoryview = ormsgpack.packb(recs)
    if as_view:  # as the hub passes it: a view past a stored value's header
        payload = memoryview(b"\x00" * fmt.HEADER_SIZE + bytes(payload))[fmt.HEADER_SIZE :]
    expected = msgpack.packb(
        {
            "Type": "records",
            "FirstSequenceNumber": str(first),
            "Records": recs,
            "ContinuationSequenceNumber": str(last),
            "MillisBehindLatest": behind,
        }
    )
    assert ev.encode_records(first, payload, last, behind) == expected


@given(continuation=sequences, behind=millis, as_str=st.booleans())
def test_encode_heartbeat_is_msgpack_of_the_map(
    continuation: int, behind: int, as_str: bool
) -> None:
    expected = msgpack.packb(
        {
            "Type": "heartbeat",
            "ContinuationSequenceNumber": str(continuation),
            "MillisBehindLatest": behind,
        }
    )
    given_as: int | str = str(continuation) if as_str else continuation
    assert ev.encode_heartbeat(given_as, behind) == expected


@given(children=child_shards)
def test_encode_end_is_msgpack_of_the_map(children: list[dict[str, Any]]) -> None:
    expected = msgpack.packb(
        {
            "Type": "end",
            "ContinuationSequenceNumber": None,
            "ChildShards": children,
            "MillisBehindLatest": 0,
        }
    )
    assert ev.encode_end(children) == expected


def test_encode_error_is_msgpack_of_the_map() -> None:
    assert ev.encode_error("ResourceInUseException", "taken over") == msgpack.packb(
        {"Type": "error", "ErrorCode": "ResourceInUseException", "Message": "taken over"}
    )


def test_a_stored_batch_is_forwarded_as_stored() -> None:
    segment = fmt.pack_segment([(f"k{i}", bytes([i]) * i) for i in range(20)], 1_700_000_000_000)
    value = fmt.build_value(41, segment.count, 1_700_000_000_000, 1_700_000_000_000, segment.packed)
    start = base(7, 3)
    encoded = ev.encode_records(start + 41, fmt.payload_of(value), start + 60, 5)
    assert bytes(fmt.payload_of(value)) in encoded
    (event,) = _decode_all(encoded)
    assert isinstance(event, RecordsEvent)
    assert event.records == [list(r) for r in fmt.unpack_records(value, "test")]
    assert event.sequence_number(0) == start + 41
    assert event.sequence_number(-1) == event.continuation_sequence == start + 60
    assert event.sequence_numbers() == [str(start + 41 + i) for i in range(20)]
    with pytest.raises(IndexError):
        event.sequence_number(20)


# -- round trips and chunking -----------------------------------------------------


@given(pair=any_event)
def test_every_event_round_trips(pair: tuple[bytes, Event]) -> None:
    encoded, event = pair
    assert _decode_all(encoded) == [event]


@given(
    middle=st.lists(st.one_of(records_events(), heartbeat_events()), max_size=8),
    final=st.one_of(st.none(), end_events(), error_events()),
    data=st.data(),
)
def test_any_chunking_gives_the_same_events(
    middle: list[tuple[bytes, Event]],
    final: tuple[bytes, Event] | None,
    data: st.DataObject,
) -> None:
    pairs = middle + ([final] if final else [])
    body = b"".join(encoded for encoded, _ in pairs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=20)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    decoder = EventDecoder()
    out: list[Event] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    decoder.close()
    assert out == [event for _, event in pairs]
    assert decoder.finished == (final is not None)


def test_byte_by_byte_feeding_returns_each_event_when_its_last_byte_arrives() -> None:
    first = ev.encode_heartbeat(5, 0)
    body = first + ev.encode_records(6, ormsgpack.packb([(1, "k", b"d")]), 6, 0)
    decoder = EventDecoder()
    seen = [(i, decoder.feed(body[i : i + 1])) for i in range(len(body))]
    assert [(i, len(events)) for i, events in seen if events] == [
        (len(first) - 1, 1),
        (len(body) - 1, 1),
    ]
    assert decoder.pending_bytes == 0


def test_many_small_events_in_one_chunk_larger_than_the_bound() -> None:
    body = b"".join(ev.encode_heartbeat(i, 0) for i in range(1000))
    decoder = EventDecoder(max_event_bytes=100)
    assert len(decoder.feed(body)) == 1000


def test_unknown_keys_are_ignored() -> None:
    body = msgpack.packb(
        {"Type": "heartbeat", "ContinuationSequenceNumber": "9", "MillisBehindLatest": 0, "X": 1}
    )
    assert _decode_all(body) == [HeartbeatEvent(9, 0)]


# -- refusals ------------------------------------------------------------------------

GOOD_RECORDS: dict[str, Any] = {
    "Type": "records",
    "FirstSequenceNumber": "10",
    "Records": [[1, "k", b"a"], [2, "k", b"b"]],
    "ContinuationSequenceNumber": "11",
    "MillisBehindLatest": 0,
}
GOOD_END: dict[str, Any] = {
    "Type": "end",
    "ContinuationSequenceNumber": None,
    "ChildShards": [
        {
            "ShardId": "shardId-000000000001",
            "ParentShards": ["shardId-000000000000"],
            "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "99"},
        }
    ],
    "MillisBehindLatest": 0,
}


def _with(base_map: dict[str, Any], **changes: Any) -> Any:
    out = dict(base_map)
    for key, value in changes.items():
        if value is _DROP:
            del out[key]
        else:
            out[key] = value
    return out


_DROP = object()
_CHILD = GOOD_END["ChildShards"][0]

MALFORMED = {
    "not a map": [1, 2],
    "no type": {"ContinuationSequenceNumber": "1"},
    "unknown type": {"Type": "surprise"},
    "records without Records": _with(GOOD_RECORDS, Records=_DROP),
    "empty records": _with(GOOD_RECORDS, Records=[], ContinuationSequenceNumber="9"),
    "continuation not the last record": _with(GOOD_RECORDS, ContinuationSequenceNumber="12"),
    "sequence as an int": _with(GOOD_RECORDS, FirstSequenceNumber=10),
    "sequence with a leading zero": _with(GOOD_RECORDS, FirstSequenceNumber="010"),
    "sequence past 128 bits": _with(
        GOOD_RECORDS,
        FirstSequenceNumber=str(1 << 128),
        ContinuationSequenceNumber=str((1 << 128) + 1),
    ),
    "a record of two fields": _with(GOOD_RECORDS, Records=[[1, "k"], [2, "k", b"b"]]),
    "data as str": _with(GOOD_RECORDS, Records=[[1, "k", "a"], [2, "k", b"b"]]),
    "negative arrival": _with(GOOD_RECORDS, Records=[[-1, "k", b"a"], [2, "k", b"b"]]),
    "negative millis": _with(GOOD_RECORDS, MillisBehindLatest=-1),
    "millis as a float": _with(GOOD_RECORDS, MillisBehindLatest=1.0),
    "heartbeat without continuation": {"Type": "heartbeat", "MillisBehindLatest": 0},
    "end with a continuation": _with(GOOD_END, ContinuationSequenceNumber="5"),
    "end behind latest": _with(GOOD_END, MillisBehindLatest=3),
    "end without children": _with(GOOD_END, ChildShards=[]),
    "child without parents": _with(GOOD_END, ChildShards=[_with(_CHILD, ParentShards=[])]),
    "child with a numeric hash key": _with(
        GOOD_END,
        ChildShards=[_with(_CHILD, HashKeyRange={"StartingHashKey": 0, "EndingHashKey": "9"})],
    ),
    "error without a code": {"Type": "error", "ErrorCode": "", "Message": "m"},
    "error without a message": {"Type": "error", "ErrorCode": "InternalFailureException"},
}


@pytest.mark.parametrize("value", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_event_is_refused_by_name(value: Any) -> None:
    decoder = EventDecoder()
    with pytest.raises(SerializationError):
        decoder.feed(msgpack.packb(value))
    with pytest.raises(SerializationError, match="already failed"):
        decoder.feed(ev.encode_heartbeat(1, 0))


def test_the_good_maps_used_above_decode() -> None:
    assert _decode_all(msgpack.packb(GOOD_RECORDS) + msgpack.packb(GOOD_END)) == [
        RecordsEvent(10, [[1, "k", b"a"], [2, "k", b"b"]], 11, 0),
        EndEvent(GOOD_END["ChildShards"]),
    ]


def test_bytes_that_are_not_msgpack_are_refused() -> None:
    with pytest.raises(SerializationError, match="not valid msgpack"):
        EventDecoder().feed(b"\xc1")  # a byte msgpack never uses


def test_a_map_with_integer_keys_is_refused() -> None:
    with pytest.raises(SerializationError):
        EventDecoder().feed(msgpack.packb({1: "records"}))


@pytest.mark.parametrize("final", [ev.encode_error("X", "m"), msgpack.packb(GOOD_END)])
def test_nothing_may_follow_a_final_event(final: bytes) -> None:
    decoder = EventDecoder()
    assert len(decoder.feed(final)) == 1
    assert decoder.finished
    assert decoder.feed(b"") == []
    with pytest.raises(SerializationError, match="final event"):
        decoder.feed(ev.encode_heartbeat(1, 0))


def test_an_event_following_the_final_one_in_the_same_chunk_is_refused() -> None:
    with pytest.raises(SerializationError, match="final event"):
        EventDecoder().feed(ev.encode_error("X", "m") + ev.encode_heartbeat(1, 0))


def test_a_body_cut_inside_an_event_is_refused_at_close() -> None:
    encoded = ev.encode_heartbeat(123, 4)
    decoder = EventDecoder()
    assert decoder.feed(encoded[:-1]) == []
    assert decoder.pending_bytes == len(encoded) - 1
    with pytest.raises(SerializationError, match="ended inside an event"):
        decoder.close()


@pytest.mark.parametrize("step", [1, 7, 100, 10_000])
def test_an_event_over_the_bound_is_refused(step: int) -> None:
    big = ev.encode_records(1, ormsgpack.packb([(1, "k", b"x" * 5000)]), 1, 0)
    decoder = EventDecoder(max_event_bytes=1000)
    with pytest.raises(SerializationError, match="larger than"):
        for i in range(0, len(big), step):
            decoder.feed(big[i : i + step])


def test_an_event_exactly_at_the_bound_is_accepted() -> None:
    encoded = ev.encode_heartbeat(1, 0)
    decoder = EventDecoder(max_event_bytes=len(encoded))
    for i in range(len(encoded)):
        events = decoder.feed(encoded[i : i + 1])
    assert events == [HeartbeatEvent(1, 0)]


# -- encoder refusals -------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x90", b"\x01\x02", b"\x80", b"\xdc\x00"],
    ids=["empty", "empty array", "not an array", "a map", "cut header"],
)
def test_encode_records_refuses_a_payload_that_is_not_a_records_array(payload: bytes) -> None:
    with pytest.raises(ValueError):
        ev.encode_records(1, payload, 1, 0)


def test_encode_records_refuses_a_stored_value_with_its_header() -> None:
    segment = fmt.pack_segment([("k", b"d")], 1)
    value = fmt.build_value(1, 1, 1, 1, segment.packed)
    with pytest.raises(ValueError, match="starting with byte 0x01"):
        ev.encode_records(1, value, 1, 0)


def test_encode_records_reads_every_array_header_form() -> None:
    assert ev.array_count(b"\x9f") == 15
    assert ev.array_count(b"\xdc\x01\x00") == 256
    assert ev.array_count(b"\xdd\x00\x01\x00\x00") == 65536


@pytest.mark.parametrize(
    ("first", "last", "behind"),
    [(1, 2, 0), (5, 4, 0), (1, 1, -1), (-1, -1, 0), (1 << 128, 1 << 128, 0)],
)
def test_encode_records_refuses_inconsistent_numbers(first: int, last: int, behind: int) -> None:
    with pytest.raises(ValueError):
        ev.encode_records(first, ormsgpack.packb([(1, "k", b"")]), last, behind)


def test_other_encoders_refuse_what_the_decoder_would() -> None:
    with pytest.raises(ValueError):
        ev.encode_heartbeat("12a", 0)
    with pytest.raises(ValueError):
        ev.encode_heartbeat(-1, 0)
    with pytest.raises(ValueError):
        ev.encode_end([])
    with pytest.raises(ValueError):
        ev.encode_end([_with(_CHILD, ShardId=_DROP)])
    with pytest.raises(ValueError):
        ev.encode_error("", "m")
