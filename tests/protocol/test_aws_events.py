"""SubscribeToShard events in AWS form: payloads, cuts, and botocore reading whole bodies."""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Iterator
from typing import Any

import botocore.eventstream
import botocore.exceptions
import botocore.parsers
import botocore.session
import cbor2
import ormsgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import InternalFailureError
from broker.fanout import events as ev
from broker.protocol import aws
from broker.protocol import eventstream as es
from broker.protocol.aws_events import (
    MAX_ERROR_MESSAGE_BYTES,
    MODELED_EXCEPTIONS,
    EventTranslator,
    payloads_for,
)
from broker.sequence import base

MODEL = botocore.session.get_session().get_service_model("kinesis")
OUTPUT = MODEL.operation_model("SubscribeToShard").output_shape
EVENT_STREAM = OUTPUT.members["EventStream"]
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
FIRST = base(3, 7) + 1  # a realistic 30-digit sequence number: incarnation 3, shard 7

Record = tuple[int, str, bytes]

# Arrival times up to the year 2100; keys with quotes, controls, non-ASCII and astral characters.
records_lists = st.lists(
    st.tuples(
        st.integers(0, 4_102_444_800_000),
        st.text(max_size=30),
        st.binary(max_size=300),
    ),
    min_size=1,
    max_size=30,
)
behinds = st.integers(0, 1 << 40)
CHILDREN = [
    {
        "ShardId": "shardId-000000000008",
        "ParentShards": ["shardId-000000000007"],
        "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "170141183460469231"},
    },
    {
        "ShardId": "shardId-000000000009",
        "ParentShards": ["shardId-000000000007"],
        "HashKeyRange": {
            "StartingHashKey": "170141183460469232",
            "EndingHashKey": "340282366920938463463374607431768211455",
        },
    },
]


def native_records(recs: list[Record], first: int = FIRST, behind: int = 0) -> bytes:
    return ev.encode_records(first, ormsgpack.packb(recs), first + len(recs) - 1, behind)


def decode(body: bytes) -> list[es.Message]:
    decoder = es.EventStreamDecoder()
    messages = decoder.feed(body)
    decoder.close()
    return messages


def from_millis(ms: int) -> datetime.datetime:
    return EPOCH + datetime.timedelta(milliseconds=ms)


def millis_of(moment: datetime.datetime) -> int:
    return round((moment - EPOCH) / datetime.timedelta(milliseconds=1))


class RawStream:
    """What botocore's ``EventStream`` reads a body from (urllib3's ``stream()``)."""

    def __init__(self, body: bytes, piece: int = 37) -> None:
        self.body = body
        self.piece = piece

    def stream(self) -> Iterator[bytes]:
        for at in range(0, len(self.body), self.piece):
            yield self.body[at : at + self.piece]

    def close(self) -> None:
        pass


def botocore_json(body: bytes) -> Iterator[dict[str, Any]]:
    """The SubscribeToShard events boto3 would give for ``body`` (its own parser and model)."""
    parser = botocore.parsers.create_parser("json")
    response = {
        "status_code": 200,
        "headers": {"content-type": es.CONTENT_TYPE},
        "body": RawStream(body),
        "context": {"operation_name": "SubscribeToShard"},
    }
    parsed = parser.parse(response, OUTPUT)
    stream: botocore.eventstream.EventStream = parsed["EventStream"]
    return iter(stream)


def botocore_cbor(body: bytes) -> tuple[es.Message | Any, Iterator[dict[str, Any]]]:
    """botocore's CBOR event parser over the Kinesis shapes, reading tag-1 values as milliseconds.

    That reading is the Java SDK's (``UNIX_TIMESTAMP_MILLIS`` for CBOR payloads);
    botocore itself speaks CBOR only for Smithy RPC v2, where tag 1 is seconds.
    """
    parser = botocore.parsers.EventStreamCBORParser(timestamp_parser=from_millis)
    stream = botocore.eventstream.EventStream(
        RawStream(body), EVENT_STREAM, parser, "SubscribeToShard"
    )
    return stream.get_initial_response(), iter(stream)


def expected_json(recs: list[Record], first: int, behind: int) -> dict[str, Any]:
    """The payload as ``json.dumps`` of dicts would write it."""
    return {
        "Records": [
            {
                "SequenceNumber": str(first + i),
                "ApproximateArrivalTimestamp": arrival / 1000,
                "Data": base64.b64encode(data).decode(),
                "PartitionKey": key,
            }
            for i, (arrival, key, data) in enumerate(recs)
        ],
        "ContinuationSequenceNumber": str(first + len(recs) - 1),
        "MillisBehindLatest": behind,
    }


def expected_cbor(recs: list[Record], first: int, behind: int) -> bytes:
    """The payload as ``cbor2.dumps`` of dicts writes it, timestamps ``CBORTag(1, ms)``."""
    return cbor2.dumps(
        {
            "Records": [
                {
                    "SequenceNumber": str(first + i),
                    "ApproximateArrivalTimestamp": cbor2.CBORTag(1, arrival),
                    "Data": data,
                    "PartitionKey": key,
                }
                for i, (arrival, key, data) in enumerate(recs)
            ],
            "ContinuationSequenceNumber": str(first + len(recs) - 1),
            "MillisBehindLatest": behind,
        }
    )


EVENT_HEADERS_JSON = {
    ":message-type": "event",
    ":event-type": "SubscribeToShardEvent",
    ":content-type": "application/json",
}


# -- payloads ------------------------------------------------------------------


def test_a_json_records_payload_exactly() -> None:
    recs = [(1_700_000_000_123, 'k"\n', b"hi"), (1_700_000_000_000, "é", b"")]
    (message,) = decode(EventTranslator(aws.JSON).translate(native_records(recs, 41, 5)))
    assert message.headers == EVENT_HEADERS_JSON
    assert message.payload == (
        b'{"Records":['
        b'{"SequenceNumber":"41","ApproximateArrivalTimestamp":1700000000.123,'
        b'"Data":"aGk=","PartitionKey":"k\\"\\n"},'
        b'{"SequenceNumber":"42","ApproximateArrivalTimestamp":1700000000.000,'
        b'"Data":"","PartitionKey":"\\u00e9"}],'
        b'"ContinuationSequenceNumber":"42","MillisBehindLatest":5}'
    )


@given(records_lists, behinds)
def test_json_records_parse_to_what_json_dumps_of_the_map_gives(
    recs: list[Record], behind: int
) -> None:
    (message,) = decode(EventTranslator(aws.JSON).translate(native_records(recs, FIRST, behind)))
    assert json.loads(message.payload) == expected_json(recs, FIRST, behind)


@given(records_lists, behinds)
def test_cbor_records_are_cbor2_of_the_map_byte_for_byte(recs: list[Record], behind: int) -> None:
    (message,) = decode(EventTranslator(aws.CBOR).translate(native_records(recs, FIRST, behind)))
    assert message.headers[":content-type"] == aws.CBOR_TYPE
    assert message.payload == expected_cbor(recs, FIRST, behind)


def test_cbor_timestamps_are_integer_milliseconds_under_tag_1() -> None:
    recs = [(1_603_152_823_565, "k", b"x")]
    (message,) = decode(EventTranslator(aws.CBOR).translate(native_records(recs)))
    # Tag 1 (0xc1), then a uint64 (0x1b) of milliseconds: what the Java SDK's
    # Long.parseLong reads (a float here would fail it).
    assert b"\xc1\x1b" + (1_603_152_823_565).to_bytes(8, "big") in message.payload


def test_heartbeat_end_and_initial_response_payloads() -> None:
    translator = EventTranslator(aws.JSON)
    (beat,) = decode(translator.translate(ev.encode_heartbeat(FIRST, 12)))
    assert beat.headers == EVENT_HEADERS_JSON
    assert json.loads(beat.payload) == {
        "Records": [],
        "ContinuationSequenceNumber": str(FIRST),
        "MillisBehindLatest": 12,
    }
    (end,) = decode(translator.translate(ev.encode_end(CHILDREN)))
    assert json.loads(end.payload) == {
        "Records": [],
        "ContinuationSequenceNumber": None,
        "MillisBehindLatest": 0,
        "ChildShards": CHILDREN,
    }
    (first,) = decode(translator.initial_response())
    assert first.text(":event-type") == "initial-response"
    assert json.loads(first.payload) == {}
    (cbor_first,) = decode(EventTranslator(aws.CBOR).initial_response())
    assert cbor2.loads(cbor_first.payload) == {}


def test_modeled_errors_are_exceptions_and_others_are_unmodeled_errors() -> None:
    translator = EventTranslator(aws.JSON)
    (modeled,) = decode(translator.translate(ev.encode_error("ResourceInUseException", "taken")))
    assert modeled.headers == {
        ":message-type": "exception",
        ":exception-type": "ResourceInUseException",
        ":content-type": "application/json",
    }
    assert json.loads(modeled.payload) == {"message": "taken"}
    (other,) = decode(translator.translate(ev.encode_error("LimitExceededException", "slow")))
    assert other.headers == {
        ":message-type": "error",
        ":error-code": "LimitExceededException",
        ":error-message": "slow",
    }
    # An empty message still makes a header (values are at least one byte): the code.
    (bare,) = decode(translator.translate(ev.encode_error("LimitExceededException", "")))
    assert bare.text(":error-message") == "LimitExceededException"
    # A long one is cut to whole characters under the bound.
    long_message = "é" * MAX_ERROR_MESSAGE_BYTES
    (cut,) = decode(translator.translate(ev.encode_error("Oops", long_message)))
    text = cut.text(":error-message")
    assert text is not None and long_message.startswith(text)
    assert MAX_ERROR_MESSAGE_BYTES - 1 <= len(text.encode()) <= MAX_ERROR_MESSAGE_BYTES
    (cbor_modeled,) = decode(
        EventTranslator(aws.CBOR).translate(ev.encode_error("InternalFailureException", "m"))
    )
    assert cbor2.loads(cbor_modeled.payload) == {"message": "m"}


def test_the_modeled_exceptions_are_the_models() -> None:
    names = {name for name in EVENT_STREAM.members if name != "SubscribeToShardEvent"}
    assert names == MODELED_EXCEPTIONS


# -- chunks and cuts -----------------------------------------------------------


def test_a_chunk_of_several_events_is_their_messages_in_order() -> None:
    translator = EventTranslator(aws.JSON)
    parts = [
        native_records([(1, "a", b"1")], FIRST),
        native_records([(2, "b", b"2"), (3, "c", b"3")], FIRST + 1),
        ev.encode_heartbeat(FIRST + 2, 0),
    ]
    joined = translator.translate(b"".join(parts))
    assert joined == b"".join(translator.translate(p) for p in parts)
    assert len(decode(joined)) == 3


@pytest.mark.parametrize("codec", [aws.JSON, aws.CBOR], ids=["json", "cbor"])
@given(
    recs=st.lists(
        st.tuples(st.integers(0, 1 << 41), st.text(max_size=20), st.binary(max_size=1500)),
        min_size=1,
        max_size=40,
    )
)
def test_a_big_batch_is_cut_into_events_that_each_continue_at_their_last_record(
    codec: aws.Codec, recs: list[Record]
) -> None:
    bound = 1024
    translator = EventTranslator(codec, max_event_bytes=bound)
    messages = decode(translator.translate(native_records(recs, FIRST, 9)))
    got: list[Record] = []
    for message in messages:
        if codec is aws.JSON:
            payload = json.loads(message.payload)
            piece = [
                (
                    round(r["ApproximateArrivalTimestamp"] * 1000),
                    r["PartitionKey"],
                    base64.b64decode(r["Data"]),
                    int(r["SequenceNumber"]),
                )
                for r in payload["Records"]
            ]
        else:
            payload = botocore.parsers.EventStreamCBORParser(
                timestamp_parser=lambda ms: ms
            )._initial_body_parse(message.payload)
            piece = [
                (
                    r["ApproximateArrivalTimestamp"],
                    r["PartitionKey"],
                    r["Data"],
                    int(r["SequenceNumber"]),
                )
                for r in payload["Records"]
            ]
        assert piece, "no event without records"
        assert [seq for *_, seq in piece] == list(
            range(FIRST + len(got), FIRST + len(got) + len(piece))
        )
        assert payload["ContinuationSequenceNumber"] == str(piece[-1][3])
        assert payload["MillisBehindLatest"] == 9
        # A piece of several records stays near the bound (its envelope aside).
        assert len(piece) == 1 or len(message.payload) <= bound + 200
        got += [(a, k, d) for a, k, d, _ in piece]
    assert got == recs


def test_an_ordinary_batch_is_one_event() -> None:
    recs = [(1_700_000_000_000 + i, f"key-{i}", bytes(100)) for i in range(500)]
    for codec in (aws.JSON, aws.CBOR):
        assert len(decode(EventTranslator(codec).translate(native_records(recs)))) == 1


def test_a_record_over_the_bound_goes_alone() -> None:
    recs = [(1, "a", b"x"), (2, "b", bytes(5000)), (3, "c", b"y")]
    messages = decode(
        EventTranslator(aws.JSON, max_event_bytes=1024).translate(native_records(recs))
    )
    assert [len(json.loads(m.payload)["Records"]) for m in messages] == [1, 1, 1]


def test_what_is_not_whole_native_events_is_an_internal_failure() -> None:
    translator = EventTranslator(aws.JSON)
    whole = native_records([(1, "a", b"x")])
    with pytest.raises(InternalFailureError):
        translator.translate(whole[:-1])
    with pytest.raises(InternalFailureError):
        translator.translate(b"\xc1 not msgpack")
    with pytest.raises(InternalFailureError):
        translator.translate(ormsgpack.packb({"Type": "nonsense"}))


def test_translator_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        EventTranslator(aws.JSON, max_event_bytes=10)
    with pytest.raises(ValueError):
        EventTranslator(aws.JSON, max_event_bytes=es.MAX_PAYLOAD_BYTES)
    other = aws.Codec("XML", "text/xml", bytes, bytes, blobs_as_text=True, time_scale=1000)
    with pytest.raises(ValueError):
        payloads_for(other)


# -- whole bodies, read by botocore --------------------------------------------


def _whole_body(translator: EventTranslator, recs: list[Record]) -> bytes:
    return translator.initial_response() + b"".join(
        translator.translate(chunk)
        for chunk in (
            native_records(recs, FIRST, 250),
            ev.encode_heartbeat(FIRST + len(recs) - 1, 0),
            ev.encode_end(CHILDREN),
        )
    )


@given(records_lists)
def test_boto3_reads_a_whole_json_subscription(recs: list[Record]) -> None:
    events = list(botocore_json(_whole_body(EventTranslator(aws.JSON), recs)))
    assert len(events) == 3
    batch, beat, end = (e["SubscribeToShardEvent"] for e in events)
    assert [r["SequenceNumber"] for r in batch["Records"]] == [
        str(FIRST + i) for i in range(len(recs))
    ]
    assert [r["Data"] for r in batch["Records"]] == [d for _, _, d in recs]
    assert [r["PartitionKey"] for r in batch["Records"]] == [k for _, k, _ in recs]
    stamps = [r["ApproximateArrivalTimestamp"] for r in batch["Records"]]
    assert all(isinstance(s, datetime.datetime) for s in stamps)
    assert [millis_of(s) for s in stamps] == [a for a, _, _ in recs]
    assert batch["ContinuationSequenceNumber"] == str(FIRST + len(recs) - 1)
    assert batch["MillisBehindLatest"] == 250
    assert "ChildShards" not in batch
    assert beat == {
        "Records": [],
        "ContinuationSequenceNumber": str(FIRST + len(recs) - 1),
        "MillisBehindLatest": 0,
    }
    # botocore drops the null continuation; the children say where to read next.
    assert end == {"Records": [], "MillisBehindLatest": 0, "ChildShards": CHILDREN}


@given(records_lists)
def test_a_whole_cbor_subscription_reads_back_with_millisecond_timestamps(
    recs: list[Record],
) -> None:
    first, stream = botocore_cbor(_whole_body(EventTranslator(aws.CBOR), recs))
    assert first.headers[":event-type"] == "initial-response"
    events = list(stream)
    assert len(events) == 3
    batch, beat, end = (e["SubscribeToShardEvent"] for e in events)
    assert [
        (millis_of(r["ApproximateArrivalTimestamp"]), r["PartitionKey"], r["Data"])
        for r in batch["Records"]
    ] == recs
    assert batch["ContinuationSequenceNumber"] == str(FIRST + len(recs) - 1)
    assert beat["Records"] == []
    assert end["ChildShards"] == CHILDREN
    assert "ContinuationSequenceNumber" not in end  # CBOR null, dropped as JSON's is


def test_boto3_raises_a_modeled_exception_event_as_the_named_error() -> None:
    translator = EventTranslator(aws.JSON)
    body = (
        translator.initial_response()
        + translator.translate(native_records([(1, "k", b"v")]))
        + translator.translate(ev.encode_error("ResourceInUseException", "another took over"))
    )
    events = botocore_json(body)
    assert next(events)["SubscribeToShardEvent"]["Records"][0]["Data"] == b"v"
    with pytest.raises(botocore.exceptions.EventStreamError) as raised:
        next(events)
    assert raised.value.response["Error"] == {
        "Code": "ResourceInUseException",
        "Message": "another took over",
    }


def test_boto3_raises_an_unmodeled_error_by_its_code() -> None:
    translator = EventTranslator(aws.JSON)
    body = translator.initial_response() + translator.translate(
        ev.encode_error("LimitExceededException", "too fast")
    )
    with pytest.raises(botocore.exceptions.EventStreamError) as raised:
        list(botocore_json(body))
    assert raised.value.response["Error"] == {
        "Code": "LimitExceededException",
        "Message": "too fast",
    }


def test_botocore_refuses_a_stream_without_the_initial_response() -> None:
    # Why ``initial_response`` exists: the same events without it do not parse.
    translator = EventTranslator(aws.JSON)
    with pytest.raises(botocore.parsers.ResponseParserError, match="initial-response"):
        botocore_json(translator.translate(ev.encode_heartbeat(FIRST, 0)))
