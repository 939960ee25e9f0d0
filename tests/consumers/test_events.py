"""The Lambda event for Kinesis (``consumers.events``): shapes as AWS documents them, sizes."""

from __future__ import annotations

import base64
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.client import Record
from consumers import events
from consumers.batching import FailureInfo
from consumers.events import (
    EVENT_OVERHEAD,
    event_json,
    failure_record,
    kinesis_record,
    kinesis_records,
    lambda_event,
    record_json_size,
    record_sizer,
    tumbling_event,
)

SEQUENCE = "49590338271490256608559692538361571095921575989136588898"
SHARD = "shardId-000000000006"
STREAM = "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"
ROLE = "arn:aws:iam::123456789012:role/lambda-role"


def test_record_is_lambdas_documented_shape() -> None:
    # The example of reference §3.2 (Lambda's developer guide), field for field.
    record = Record(SEQUENCE, 1545084650987, b"Hello, this is a test.", "1")
    got = kinesis_record(
        record, shard_id=SHARD, stream_arn=STREAM, region="us-east-2", identity_arn=ROLE
    )
    assert got == {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "1",
            "sequenceNumber": SEQUENCE,
            "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
            "approximateArrivalTimestamp": 1545084650.987,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{SHARD}:{SEQUENCE}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": ROLE,
        "awsRegion": "us-east-2",
        "eventSourceARN": STREAM,
    }
    assert json.dumps(got["kinesis"]["approximateArrivalTimestamp"]) == "1545084650.987"


def test_defaults_and_batch_form_agree() -> None:
    records = [Record(str(i), 1000 * i, bytes([i]) * i, f"k{i}") for i in range(5)]
    one_by_one = [kinesis_record(r, shard_id=SHARD, stream_arn=STREAM) for r in records]
    assert kinesis_records(records, shard_id=SHARD, stream_arn=STREAM) == one_by_one
    assert one_by_one[0]["awsRegion"] == "local"
    assert one_by_one[0]["invokeIdentityArn"] == events.DEFAULT_IDENTITY_ARN
    assert [base64.b64decode(r["kinesis"]["data"]) for r in one_by_one] == [r.data for r in records]


def test_lambda_event_and_tumbling_event() -> None:
    records = kinesis_records([Record("1", 0, b"x", "k")], shard_id=SHARD, stream_arn=STREAM)
    assert lambda_event(records) == {"Records": records}
    window = tumbling_event(
        records,
        window=(1596128400.0, 1596128700.0),
        state=None,
        shard_id=SHARD,
        stream_arn=STREAM,
        is_final=False,
        terminated_early=False,
    )
    assert window == {
        "Records": records,
        "window": {"start": "2020-07-30T17:00:00Z", "end": "2020-07-30T17:05:00Z"},
        "state": {},
        "shardId": SHARD,
        "eventSourceARN": STREAM,
        "isFinalInvokeForWindow": False,
        "isWindowTerminatedEarly": False,
    }
    carried = tumbling_event(
        [],
        window=(0.0, 60.0),
        state={"1": 282},
        shard_id=SHARD,
        stream_arn=STREAM,
        is_final=True,
        terminated_early=True,
    )
    assert carried["state"] == {"1": 282}
    assert carried["isFinalInvokeForWindow"] and carried["isWindowTerminatedEarly"]


def test_event_overhead_bounds_the_envelope_and_window_fields() -> None:
    long_arn = "arn:aws:kinesis:ap-southeast-2:123456789012:stream/" + "s" * 128
    envelope = tumbling_event(
        [],
        window=(4102444800.5, 4102444860.5),
        state={},
        shard_id="shardId-000000000000",
        stream_arn=long_arn,
        is_final=False,
        terminated_early=False,
    )
    assert len(event_json(envelope)) <= EVENT_OVERHEAD
    assert len(event_json(lambda_event([]))) <= EVENT_OVERHEAD


keys = st.text(min_size=1, max_size=64)  # any characters: quotes, controls, non-ASCII
records = st.builds(
    Record,
    st.integers(0, 2**128).map(str),
    st.one_of(st.integers(0, 2**60), st.integers(10**12, 10**13 - 1)),  # any; 2001-2286
    st.binary(max_size=600),
    keys,
)


@settings(max_examples=300, deadline=None)
@given(record=records, shard_id=st.text(max_size=30), region=st.text(max_size=12))
def test_record_json_size_is_a_tight_upper_bound(
    record: Record, shard_id: str, region: str
) -> None:
    exact = len(
        event_json(kinesis_record(record, shard_id=shard_id, stream_arn=STREAM, region=region))
    )
    estimate = record_json_size(record, shard_id=shard_id, stream_arn=STREAM, region=region)
    # One comma between records, and a timestamp counted at its longest.
    assert exact + 1 <= estimate <= exact + 1 + 3
    sizer = record_sizer(shard_id=shard_id, stream_arn=STREAM, region=region)
    assert sizer(record) == estimate


@settings(max_examples=50, deadline=None)
@given(batch=st.lists(records, max_size=20))
def test_an_event_is_within_its_records_sizes_and_the_overhead(batch: list[Record]) -> None:
    event = lambda_event(kinesis_records(batch, shard_id=SHARD, stream_arn=STREAM))
    sizes = sum(record_json_size(r, shard_id=SHARD, stream_arn=STREAM) for r in batch)
    assert len(event_json(event)) <= EVENT_OVERHEAD + sizes
    assert len(event_json(event)) >= sizes - 4 * len(batch)  # tight: not a loose guess


def test_failure_record_is_lambdas_kinesis_batch_info() -> None:
    info = FailureInfo(
        condition="RetryAttemptsExhausted",
        shard_id="shardId-000000000001",
        approximate_invoke_count=4,
        start_sequence_number="100",
        end_sequence_number="599",
        approximate_arrival_of_first_record=1573691884835,
        approximate_arrival_of_last_record=1573691885580,
        batch_size=500,
        error_type="Unhandled",
        error_message="boom",
    )
    function = "arn:aws:lambda:us-east-2:123456789012:function:myfunction"
    got = failure_record(
        info, function_arn=function, stream_arn=STREAM, request_id="r-1", now=1573691886.021
    )
    assert got == {
        "requestContext": {
            "requestId": "r-1",
            "functionArn": function,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 4,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": "2019-11-14T00:38:06.021Z",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000001",
            "startSequenceNumber": "100",
            "endSequenceNumber": "599",
            "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
            "batchSize": 500,
            "streamArn": STREAM,
        },
    }
    json.dumps(got)  # a document the destination stream can carry as is


def test_failure_record_of_a_batch_never_invoked() -> None:
    info = FailureInfo(
        condition=events.PAYLOAD_TOO_LARGE,
        shard_id=SHARD,
        approximate_invoke_count=0,
        start_sequence_number="7",
        end_sequence_number="7",
        approximate_arrival_of_first_record=1001,
        approximate_arrival_of_last_record=1001,
        batch_size=1,
    )
    got = failure_record(info, function_arn="f", stream_arn=STREAM)
    assert got["requestContext"]["condition"] == "PayloadTooLarge"
    assert got["responseContext"] == {
        "statusCode": 0,
        "executedVersion": "$LATEST",
        "functionError": None,
    }
    assert got["KinesisBatchInfo"]["approximateArrivalOfFirstRecord"] == "1970-01-01T00:00:01.001Z"
    assert len(got["requestContext"]["requestId"]) == 36  # a fresh UUID
    assert got["timestamp"].endswith("Z")
    conditions = {"RetryAttemptsExhausted", "RecordAgeExceeded", "PayloadTooLarge"}
    assert conditions == events.CONDITIONS
