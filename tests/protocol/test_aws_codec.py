"""The AWS JSON/CBOR codec: botocore's own serializer and parser on either side of it."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import botocore.parsers
import botocore.serialize
import botocore.session
import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import SerializationError, ValidationError
from broker.protocol import aws

MODEL = botocore.session.get_session().get_service_model("kinesis")


def serialized(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """The request botocore builds for ``operation`` (its body, headers)."""
    serializer = botocore.serialize.create_serializer("json")
    request: dict[str, Any] = serializer.serialize_to_request(
        params, MODEL.operation_model(operation)
    )
    return request


def parsed(operation: str, status: int, body: bytes) -> dict[str, Any]:
    """What botocore makes of a response body of ``operation``."""
    parser = botocore.parsers.create_parser("json")
    shape = MODEL.operation_model(operation).output_shape
    result: dict[str, Any] = parser.parse(
        {"status_code": status, "headers": {}, "body": body}, shape
    )
    return result


# -- requests -----------------------------------------------------------------


@given(
    data=st.binary(max_size=300),
    key=st.text(min_size=1, max_size=20),
    explicit=st.none() | st.integers(0, 2**128 - 1).map(str),
)
def test_put_record_as_botocore_sends_it_decodes_to_native_shapes(
    data: bytes, key: str, explicit: str | None
) -> None:
    params: dict[str, Any] = {"StreamName": "s", "Data": data, "PartitionKey": key}
    if explicit is not None:
        params["ExplicitHashKey"] = explicit
    request = serialized("PutRecord", params)
    assert request["headers"]["X-Amz-Target"] == "Kinesis_20131202.PutRecord"
    codec = aws.codec_for(request["headers"]["Content-Type"])
    assert codec is aws.JSON
    assert codec.decode_request(request["body"]) == params


@given(records=st.lists(st.binary(max_size=64), min_size=1, max_size=20))
def test_put_records_blobs_of_every_entry_are_bytes(records: list[bytes]) -> None:
    params = {
        "StreamName": "s",
        "Records": [{"Data": d, "PartitionKey": str(i)} for i, d in enumerate(records)],
    }
    decoded = aws.JSON.decode_request(serialized("PutRecords", params)["body"])
    assert decoded == params


@given(seconds=st.floats(0, 4e9, allow_nan=False).map(lambda s: round(s, 3)))
def test_timestamps_sent_as_epoch_seconds_arrive_as_milliseconds(seconds: float) -> None:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    params = {
        "StreamName": "s",
        "ShardId": "shardId-000000000000",
        "ShardIteratorType": "AT_TIMESTAMP",
        "Timestamp": moment,
    }
    decoded = aws.JSON.decode_request(serialized("GetShardIterator", params)["body"])
    assert decoded["Timestamp"] == round(moment.timestamp() * 1000)


def test_nested_timestamps_are_converted_in_maps_and_lists() -> None:
    body = json.dumps(
        {
            "ConsumerARN": "a",
            "ShardId": "shardId-000000000000",
            "StartingPosition": {"Type": "AT_TIMESTAMP", "Timestamp": 1700000000.5},
            "More": [{"Timestamp": 2}],
        }
    ).encode()
    decoded = aws.JSON.decode_request(body)
    assert decoded["StartingPosition"] == {"Type": "AT_TIMESTAMP", "Timestamp": 1700000000500}
    assert decoded["More"] == [{"Timestamp": 2000}]


def test_timestamps_as_text_are_read_as_seconds_or_iso_8601() -> None:
    decoded = aws.JSON.decode_request(b'{"Timestamp": "1700000000.25"}')
    assert decoded["Timestamp"] == 1700000000250
    decoded = aws.JSON.decode_request(b'{"Timestamp": "2023-11-14T22:13:20Z"}')
    assert decoded["Timestamp"] == 1700000000000
    with pytest.raises(SerializationError, match="Timestamp"):
        aws.JSON.decode_request(b'{"Timestamp": "yesterday"}')


@pytest.mark.parametrize(
    "body",
    [b"{", b"[1, 2]", b'"text"', b"\xff\xfe", b'{"a": 1} trailing', b"1e99999999"],
)
def test_a_body_that_is_not_one_json_object_is_a_serialization_error(body: bytes) -> None:
    with pytest.raises(SerializationError):
        aws.JSON.decode_request(body)


def test_an_empty_body_is_an_empty_request() -> None:
    assert aws.JSON.decode_request(b"") == {}
    assert aws.CBOR.decode_request(b"  ") == {}


@pytest.mark.parametrize("data", ["not base64!", "YQ", "YWJj\n"])
def test_data_that_is_not_base64_is_a_serialization_error(data: str) -> None:
    body = json.dumps({"StreamName": "s", "Data": data, "PartitionKey": "k"}).encode()
    with pytest.raises(SerializationError, match="Data is not valid base64"):
        aws.JSON.decode_request(body)


def test_non_finite_timestamps_are_refused() -> None:
    with pytest.raises(SerializationError):
        aws.JSON.decode_request(b'{"Timestamp": NaN}')  # not JSON at all
    with pytest.raises(SerializationError, match="finite"):
        aws.CBOR.decode_request(cbor2.dumps({"Timestamp": float("inf")}))


def test_values_of_the_wrong_type_are_left_for_the_handler_to_refuse() -> None:
    decoded = aws.JSON.decode_request(b'{"Data": 5, "Timestamp": true, "ShardCount": "x"}')
    assert decoded == {"Data": 5, "Timestamp": True, "ShardCount": "x"}


# -- CBOR ---------------------------------------------------------------------


@given(data=st.binary(max_size=200), ms=st.integers(0, 2**42))
def test_cbor_blobs_are_byte_strings_and_timestamps_milliseconds(data: bytes, ms: int) -> None:
    body = cbor2.dumps(
        {
            "StreamName": "s",
            "Records": [{"Data": data, "PartitionKey": "k"}],
            "StartingPosition": {"Timestamp": ms},
        }
    )
    decoded = aws.CBOR.decode_request(body)
    assert decoded["Records"] == [{"Data": data, "PartitionKey": "k"}]
    assert decoded["StartingPosition"] == {"Timestamp": ms}


def test_cbor_epoch_tags_in_seconds_are_read_as_moments() -> None:
    moment = datetime.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)
    decoded = aws.CBOR.decode_request(
        cbor2.dumps({"Timestamp": moment}, datetime_as_timestamp=True)
    )
    assert decoded["Timestamp"] == round(moment.timestamp() * 1000)


@given(ms=st.integers(100_000_000_000, 2**45))
def test_cbor_epoch_tags_in_milliseconds_as_the_java_sdk_writes_them(ms: int) -> None:
    decoded = aws.CBOR.decode_request(cbor2.dumps({"Timestamp": cbor2.CBORTag(1, ms)}))
    assert decoded["Timestamp"] == ms


def untag(value: object, _immutable: bool) -> object:
    return ("tag 1", value)


def test_cbor_responses_carry_bytes_and_tagged_milliseconds() -> None:
    body = aws.CBOR.encode_response(
        {"Records": [{"Data": b"\x00\x01", "ApproximateArrivalTimestamp": 1700000000123}]}
    )
    assert cbor2.loads(body, semantic_decoders={1: untag}) == {
        "Records": [{"Data": b"\x00\x01", "ApproximateArrivalTimestamp": ("tag 1", 1700000000123)}]
    }


@pytest.mark.parametrize("body", [b"\xff", cbor2.dumps([1, 2]), b"\x9f"])
def test_a_body_that_is_not_one_cbor_map_is_a_serialization_error(body: bytes) -> None:
    with pytest.raises(SerializationError):
        aws.CBOR.decode_request(body)


# -- responses ----------------------------------------------------------------


@given(
    records=st.lists(
        st.tuples(st.binary(max_size=64), st.integers(0, 2**41), st.text(min_size=1, max_size=8)),
        max_size=10,
    )
)
def test_get_records_answer_is_what_botocore_expects(
    records: list[tuple[bytes, int, str]],
) -> None:
    native = {
        "Records": [
            {
                "SequenceNumber": str(100 + i),
                "ApproximateArrivalTimestamp": ms,
                "Data": data,
                "PartitionKey": key,
            }
            for i, (data, ms, key) in enumerate(records)
        ],
        "NextShardIterator": "it",
        "MillisBehindLatest": 0,
    }
    result = parsed("GetRecords", 200, aws.JSON.encode_response(native))
    assert [r["Data"] for r in result["Records"]] == [d for d, _, _ in records]
    assert [r["PartitionKey"] for r in result["Records"]] == [k for _, _, k in records]
    assert [
        round(r["ApproximateArrivalTimestamp"].timestamp() * 1000) for r in result["Records"]
    ] == [ms for _, ms, _ in records]
    assert result["NextShardIterator"] == "it"


def test_stream_creation_time_is_epoch_seconds() -> None:
    body = aws.JSON.encode_response(
        {"StreamDescriptionSummary": {"StreamName": "s", "StreamCreationTimestamp": 1700000000123}}
    )
    assert json.loads(body)["StreamDescriptionSummary"]["StreamCreationTimestamp"] == 1700000000.123
    result = parsed("DescribeStreamSummary", 200, body)
    created = result["StreamDescriptionSummary"]["StreamCreationTimestamp"]
    assert created == datetime.datetime.fromtimestamp(1700000000.123, tz=datetime.UTC)


def test_bytes_anywhere_in_a_response_are_base64_text() -> None:
    body = aws.JSON.encode_response({"Extra": [{"Blob": b"\xff"}], "Top": bytearray(b"a")})
    assert json.loads(body) == {
        "Extra": [{"Blob": base64.b64encode(b"\xff").decode()}],
        "Top": "YQ==",
    }


def test_errors_are_what_botocore_reads_as_the_named_error() -> None:
    body = aws.JSON.encode_error(ValidationError("bad"))
    parser = botocore.parsers.create_parser("json")
    result = parser.parse(
        {"status_code": 400, "headers": {}, "body": body},
        MODEL.operation_model("PutRecord").output_shape,
    )
    assert result["Error"]["Code"] == "ValidationException"
    assert result["Error"]["Message"] == "bad"
    assert cbor2.loads(aws.CBOR.encode_error(ValidationError("bad"))) == {
        "__type": "ValidationException",
        "message": "bad",
    }


# -- targets and content types -----------------------------------------------


@pytest.mark.parametrize(
    ("target", "name"),
    [
        ("Kinesis_20131202.PutRecords", "PutRecords"),
        (" Kinesis_20131202.ListShards ", "ListShards"),
        ("Kinesis_20131202.", ""),
        ("Kinesis_20131203.PutRecords", ""),
        ("DynamoDB_20120810.GetItem", ""),
        ("PutRecords", ""),
        ("Kinesis_20131202.Put-Records", ""),
    ],
)
def test_the_target_names_the_operation(target: str, name: str) -> None:
    assert aws.operation_of(target) == name


@pytest.mark.parametrize(
    ("content_type", "codec"),
    [
        ("application/x-amz-json-1.1", aws.JSON),
        ("application/x-amz-cbor-1.1", aws.CBOR),
        ("Application/X-Amz-Cbor-1.1; charset=binary", aws.CBOR),
        ("application/json", aws.JSON),
        ("", aws.JSON),
    ],
)
def test_the_content_type_chooses_the_codec(content_type: str, codec: aws.Codec) -> None:
    assert aws.codec_for(content_type) is codec


@pytest.mark.parametrize(
    "body",
    [
        b'{"Timestamp": "inf"}',
        b'{"Timestamp": "1e400"}',
        b'{"Timestamp": 1e308}',
        b'{"StartingPosition": {"Timestamp": "-inf"}}',
        b'{"Timestamp": 1e300}',
    ],
)
def test_timestamps_out_of_any_range_are_serialization_errors(body: bytes) -> None:
    with pytest.raises(SerializationError, match="Timestamp"):
        aws.JSON.decode_request(body)


def test_cbor_bignum_timestamps_are_serialization_errors() -> None:
    for value in (10**400, cbor2.CBORTag(1, 10**400), cbor2.CBORTag(1, -(10**30))):
        with pytest.raises(SerializationError, match="Timestamp"):
            aws.CBOR.decode_request(cbor2.dumps({"Timestamp": value}))
