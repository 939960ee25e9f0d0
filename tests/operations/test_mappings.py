"""Event source mappings: parameter validation (pure, property-tested) and the five operations.

The operations run over a real log (``open_harness``): mappings are stored,
their consumers registered and deregistered in the same commits, and a
mapping whose stream or consumer went away says so in its state.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.config import BrokerConfig
from broker.errors import (
    InvalidParameterValueError,
    LimitExceededError,
    ResourceConflictError,
    ResourceInUseError,
    ResourceNotFoundError,
    ValidationError,
)
from broker.operations import mappings as m

from .conftest import START_MS, Harness, open_harness

CONFIG = BrokerConfig()
ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/"
NOW_S = START_MS / 1000
FN = "python:handlers.mod:handle"


def create(**request: Any) -> dict[str, Any]:
    return m.create_settings(CONFIG, {"StartingPosition": "LATEST", **request}, NOW_S)


def refused(name: str, **request: Any) -> str:
    """The message of the InvalidParameterValueError ``request`` gets; it names ``name``."""
    with pytest.raises(InvalidParameterValueError) as caught:
        create(**request)
    assert caught.value.message.startswith(name + ":"), caught.value.message
    return caught.value.message


# -- integer parameters: every in-range value accepted, every other one refused by name ------

values = st.one_of(st.integers(-10, 700_000), st.integers(-(2**63), 2**63 - 1))


def in_range(name: str, value: int) -> bool:
    low, high, _ = m.INT_PARAMETERS[name]
    if name == "MaximumRecordAgeInSeconds" and 0 <= value < 60:
        return False
    return low <= value <= high


@given(name=st.sampled_from(sorted(m.INT_PARAMETERS)), value=values)
def test_an_integer_parameter_is_accepted_exactly_in_its_range(name: str, value: int) -> None:
    extra = {"ParallelizationFactor": 1} if name == "TumblingWindowInSeconds" else {}
    if in_range(name, value):
        assert create(**{name: value, **extra})[name] == value
    else:
        message = refused(name, **{name: value})
        assert str(value) in message


@pytest.mark.parametrize(
    ("name", "edges"),
    [
        ("BatchSize", (1, 10_000)),
        ("MaximumBatchingWindowInSeconds", (0, 300)),
        ("ParallelizationFactor", (1, 10)),
        ("MaximumRetryAttempts", (-1, 10_000)),
        ("TumblingWindowInSeconds", (0, 900)),
    ],
)
def test_range_edges(name: str, edges: tuple[int, int]) -> None:
    low, high = edges
    assert create(**{name: low})[name] == low
    assert create(**{name: high})[name] == high
    refused(name, **{name: low - 1})
    refused(name, **{name: high + 1})


def test_record_age_is_unlimited_or_at_least_a_minute() -> None:
    assert create(MaximumRecordAgeInSeconds=-1)["MaximumRecordAgeInSeconds"] == -1
    assert create(MaximumRecordAgeInSeconds=60)["MaximumRecordAgeInSeconds"] == 60
    assert create(MaximumRecordAgeInSeconds=604_800)["MaximumRecordAgeInSeconds"] == 604_800
    for bad in (0, 59, 604_801, -2):
        refused("MaximumRecordAgeInSeconds", MaximumRecordAgeInSeconds=bad)


def test_defaults_are_lambdas() -> None:
    assert create() == {
        "StartingPosition": "LATEST",
        "BatchSize": 100,
        "MaximumBatchingWindowInSeconds": 0,
        "ParallelizationFactor": 1,
        "MaximumRetryAttempts": -1,
        "MaximumRecordAgeInSeconds": -1,
        "TumblingWindowInSeconds": 0,
        "BisectBatchOnFunctionError": False,
        "Enabled": True,
        "DestinationConfig": {"OnFailure": {}},
        "FunctionResponseTypes": [],
        "FilterCriteria": {"Filters": []},
    }


@pytest.mark.parametrize(
    ("request_", "missing_or_mistyped"),
    [
        ({}, "StartingPosition"),
        ({"StartingPosition": "LATEST", "BatchSize": "10"}, "BatchSize"),
        ({"StartingPosition": "LATEST", "BatchSize": True}, "BatchSize"),
        ({"StartingPosition": "LATEST", "Enabled": 1}, "Enabled"),
        ({"StartingPosition": "LATEST", "FilterCriteria": []}, "FilterCriteria"),
        ({"StartingPosition": "LATEST", "FunctionResponseTypes": "x"}, "FunctionResponseTypes"),
        ({"StartingPosition": "AT_TIMESTAMP", "StartingPositionTimestamp": "1"}, "Timestamp"),
    ],
)
def test_missing_or_mistyped_is_a_validation_error(
    request_: dict[str, Any], missing_or_mistyped: str
) -> None:
    with pytest.raises(ValidationError, match=missing_or_mistyped):
        m.create_settings(CONFIG, request_, NOW_S)


# -- starting position ----------------------------------------------------------------


def test_starting_positions() -> None:
    assert create(StartingPosition="TRIM_HORIZON")["StartingPosition"] == "TRIM_HORIZON"
    at = create(StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=NOW_S - 60)
    assert at["StartingPositionTimestamp"] == NOW_S - 60
    assert create(StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=int(NOW_S))[
        "StartingPositionTimestamp"
    ] == int(NOW_S)
    refused("StartingPosition", StartingPosition="AT_SEQUENCE_NUMBER")
    refused("StartingPositionTimestamp", StartingPosition="AT_TIMESTAMP")
    assert "future" in refused(
        "StartingPositionTimestamp",
        StartingPosition="AT_TIMESTAMP",
        StartingPositionTimestamp=NOW_S + 1,
    )
    refused(
        "StartingPositionTimestamp", StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=-1
    )
    assert "only valid with AT_TIMESTAMP" in refused(
        "StartingPositionTimestamp", StartingPositionTimestamp=NOW_S
    )


# -- the other parameters ----------------------------------------------------------------


def test_tumbling_window_requires_parallelization_factor_one() -> None:
    assert create(TumblingWindowInSeconds=60)["TumblingWindowInSeconds"] == 60
    assert create(TumblingWindowInSeconds=0, ParallelizationFactor=5)["ParallelizationFactor"] == 5
    message = refused(
        "TumblingWindowInSeconds", TumblingWindowInSeconds=60, ParallelizationFactor=2
    )
    assert "ParallelizationFactor 1" in message


def test_update_is_validated_as_a_whole() -> None:
    before = create(ParallelizationFactor=4)
    changes = m.update_changes(CONFIG, {"TumblingWindowInSeconds": 30})
    with pytest.raises(InvalidParameterValueError, match="TumblingWindowInSeconds"):
        m.update_settings(before, changes)
    both = m.update_changes(CONFIG, {"TumblingWindowInSeconds": 30, "ParallelizationFactor": 1})
    assert m.update_settings(before, both)["TumblingWindowInSeconds"] == 30
    for fixed in ("EventSourceArn", "StartingPosition", "StartingPositionTimestamp"):
        with pytest.raises(InvalidParameterValueError, match=rf"^{fixed}: it cannot be changed"):
            m.update_changes(CONFIG, {fixed: "LATEST"})


def test_destination_config() -> None:
    named = create(DestinationConfig={"OnFailure": {"Destination": "dlq"}})
    assert named["DestinationConfig"] == {"OnFailure": {"Destination": ARN + "dlq"}}
    by_arn = create(DestinationConfig={"OnFailure": {"Destination": ARN + "dlq"}})
    assert by_arn == named
    empties: list[dict[str, Any]] = [{}, {"OnFailure": {}}, {"OnFailure": {"Destination": ""}}]
    for empty in empties:
        assert create(DestinationConfig=empty)["DestinationConfig"] == {"OnFailure": {}}
    assert "not supported" in refused(
        "DestinationConfig.OnSuccess", DestinationConfig={"OnSuccess": {"Destination": "x"}}
    )
    for bad in ("not a name!", ARN + "s/consumer/c:1", "arn:aws:sqs:us-east-1:0:q", 5):
        refused(
            "DestinationConfig.OnFailure.Destination",
            DestinationConfig={"OnFailure": {"Destination": bad}},
        )
    refused(
        "DestinationConfig.OnFailure.Destination",
        DestinationConfig={
            "OnFailure": {"Destination": "arn:aws:kinesis:eu-west-1:000000000000:stream/x"}
        },
    )


def test_function_response_types() -> None:
    assert create(FunctionResponseTypes=[])["FunctionResponseTypes"] == []
    rbif = ["ReportBatchItemFailures"]
    assert create(FunctionResponseTypes=rbif)["FunctionResponseTypes"] == rbif
    refused("FunctionResponseTypes", FunctionResponseTypes=["Other"])


def pattern(n: int = 0) -> dict[str, str]:
    return {"Pattern": json.dumps({"data": {"n": [n]}})}


def test_filter_criteria() -> None:
    five = {"Filters": [pattern(i) for i in range(5)]}
    assert create(FilterCriteria=five)["FilterCriteria"] == five
    assert create(FilterCriteria={})["FilterCriteria"] == {"Filters": []}
    assert "at most 5" in refused(
        "FilterCriteria.Filters", FilterCriteria={"Filters": [pattern(i) for i in range(6)]}
    )
    long = {"Pattern": json.dumps({"partitionKey": ["k" * 4100]})}
    assert "4096" in refused(
        "FilterCriteria.Filters[0].Pattern", FilterCriteria={"Filters": [long]}
    )
    for bad in ("{", "[1]", "5", '"x"', "[" * 3000 + "]" * 3000):
        refused(
            "FilterCriteria.Filters[1].Pattern",
            FilterCriteria={"Filters": [pattern(), {"Pattern": bad}]},
        )
    refused("FilterCriteria.Filters[0].Pattern", FilterCriteria={"Filters": [{"X": "{}"}]})
    refused("FilterCriteria.Filters", FilterCriteria={"Filters": "{}"})


@pytest.fixture
def validator() -> Iterator[list[Any]]:
    """A filter validator installed for one test: it records what it saw, refuses "bad"."""
    seen: list[Any] = []

    def validate(criteria: Any) -> None:
        seen.append(criteria)
        if "bad" in json.dumps(criteria):
            raise InvalidParameterValueError("FilterCriteria: the pattern is bad")

    m.install_filter_validator(validate)
    try:
        yield seen
    finally:
        m.install_filter_validator(None)


def test_an_installed_filter_validator_checks_patterns(validator: list[Any]) -> None:
    good = {"Filters": [pattern()]}
    assert create(FilterCriteria=good)["FilterCriteria"] == good
    assert validator == [good]
    bad = {"Filters": [{"Pattern": json.dumps({"data": "bad"})}]}
    with pytest.raises(InvalidParameterValueError, match="bad"):
        create(FilterCriteria=bad)


@pytest.mark.parametrize(
    "target",
    [
        "python:handlers:handle",
        "python:pkg.mod.sub:Class.method",
        "ray:pkg.mod:fn",
        "exec:python3 handler.py --flag",
        "http://127.0.0.1:8080/invoke",
        "https://example.com/fn?x=1",
    ],
)
def test_function_names_accepted(target: str) -> None:
    assert m.check_function_name(target) == target


@pytest.mark.parametrize(
    "target",
    [
        "my-function",
        "python:mod",
        "python:mod:",
        "python:1mod:fn",
        "python:mod:fn-x",
        "ray::fn",
        "exec:",
        "exec:   ",
        "http://",
        "https:///path",
        "http://host:99999/",
        "http://host/a b",
        "ftp://host/x",
        "arn:aws:lambda:us-east-1:000000000000:function:f",
        "python:" + "a" * 3000 + ":f",
    ],
)
def test_function_names_refused(target: str) -> None:
    with pytest.raises(InvalidParameterValueError, match=r"^FunctionName:"):
        m.check_function_name(target)


@given(st.text(max_size=40))
def test_any_function_name_is_accepted_or_refused_by_name(target: str) -> None:
    try:
        m.check_function_name(target)
    except InvalidParameterValueError as exc:
        assert exc.message.startswith("FunctionName:")
    else:
        assert target.startswith(("python:", "ray:", "exec:", "http://", "https://"))


@pytest.mark.parametrize(
    ("value", "arn", "stream", "consumer"),
    [
        ("s", ARN + "s", "s", None),
        (ARN + "s", ARN + "s", "s", None),
        (ARN + "s/consumer/app:1700000000", ARN + "s/consumer/app:1700000000", "s", ("app", 1)),
    ],
)
def test_event_sources(value: str, arn: str, stream: str, consumer: tuple[str, int] | None) -> None:
    source = m.parse_event_source(CONFIG, value)
    assert (source.arn, source.stream) == (arn, stream)
    assert (source.consumer is None) == (consumer is None)
    if consumer is not None:
        assert source.consumer == ("app", 1_700_000_000)


@pytest.mark.parametrize("value", ["", "bad name", ARN + "s/consumer/app", "arn:aws:sqs:x"])
def test_bad_event_sources(value: str) -> None:
    with pytest.raises(InvalidParameterValueError, match=r"^EventSourceArn:"):
        m.parse_event_source(CONFIG, value)


# -- the operations over a real log ---------------------------------------------------------


async def make(ops: Harness, **request: Any) -> dict[str, Any]:
    full = {"FunctionName": FN, "EventSourceArn": "s", "StartingPosition": "LATEST", **request}
    return await ops("CreateEventSourceMapping", **full)


async def consumer_names(ops: Harness, stream: str = "s") -> list[str]:
    out = await ops("ListStreamConsumers", StreamARN=ARN + stream)
    return [c["ConsumerName"] for c in out["Consumers"]]


async def test_create_get_update_delete(ops: Harness) -> None:
    await ops.create("s", 2)
    made = await make(ops, BatchSize=500, FilterCriteria={"Filters": [pattern()]})
    uuid = made["UUID"]
    assert m.parse_uuid(uuid) == uuid
    consumer = f"mapping-{uuid}"
    assert made == {
        "UUID": uuid,
        "FunctionArn": FN,
        "EventSourceArn": ARN + "s",
        "StartingPosition": "LATEST",
        "BatchSize": 500,
        "MaximumBatchingWindowInSeconds": 0,
        "ParallelizationFactor": 1,
        "MaximumRetryAttempts": -1,
        "MaximumRecordAgeInSeconds": -1,
        "TumblingWindowInSeconds": 0,
        "BisectBatchOnFunctionError": False,
        "DestinationConfig": {"OnFailure": {}},
        "FunctionResponseTypes": [],
        "FilterCriteria": {"Filters": [pattern()]},
        "State": "Enabled",
        "StateTransitionReason": "USER_INITIATED",
        "LastModified": START_MS / 1000,
        "ConsumerARN": f"{ARN}s/consumer/{consumer}:{START_MS // 1000}",
    }
    assert await consumer_names(ops) == [consumer]
    assert await ops("GetEventSourceMapping", UUID=uuid) == made
    assert await ops("GetEventSourceMapping", UUID=uuid.upper()) == made

    await ops.create("dlq", 1)
    ops.clock.advance(2500)
    changed = await ops(
        "UpdateEventSourceMapping",
        UUID=uuid,
        Enabled=False,
        ParallelizationFactor=10,
        DestinationConfig={"OnFailure": {"Destination": "dlq"}},
        FunctionName="exec:./handler",
    )
    assert changed["State"] == "Disabled"
    assert changed["ParallelizationFactor"] == 10 and changed["BatchSize"] == 500
    assert changed["DestinationConfig"] == {"OnFailure": {"Destination": ARN + "dlq"}}
    assert changed["FunctionArn"] == "exec:./handler"
    assert changed["LastModified"] == START_MS / 1000 + 2.5
    assert changed["ConsumerARN"] == made["ConsumerARN"]
    assert await ops("GetEventSourceMapping", UUID=uuid) == changed

    deleted = await ops("DeleteEventSourceMapping", UUID=uuid)
    assert deleted["State"] == "Deleting" and deleted["UUID"] == uuid
    assert await consumer_names(ops) == []
    for name in ("GetEventSourceMapping", "DeleteEventSourceMapping", "UpdateEventSourceMapping"):
        with pytest.raises(ResourceNotFoundError, match=uuid):
            await ops(name, UUID=uuid)


async def test_unknown_and_malformed_uuids(ops: Harness) -> None:
    with pytest.raises(ResourceNotFoundError):
        await ops("GetEventSourceMapping", UUID="00000000-0000-4000-8000-000000000000")
    with pytest.raises(InvalidParameterValueError, match=r"^UUID:"):
        await ops("GetEventSourceMapping", UUID="not-a-uuid")
    with pytest.raises(ValidationError, match="UUID"):
        await ops("DeleteEventSourceMapping")
    with pytest.raises(InvalidParameterValueError, match=r"^UUID:"):
        await ops("DeleteEventSourceMapping", UUID="")
    await ops.create("s", 1)
    for empty in ("FunctionName", "EventSourceArn"):
        with pytest.raises(InvalidParameterValueError, match=rf"^{empty}:"):
            await make(ops, **{empty: ""})


async def test_refusals_write_nothing(ops: Harness) -> None:
    await ops.create("s", 1)
    with pytest.raises(ResourceNotFoundError, match="Stream nope"):
        await make(ops, EventSourceArn="nope")
    with pytest.raises(InvalidParameterValueError, match=r"^DestinationConfig.OnFailure"):
        await make(ops, DestinationConfig={"OnFailure": {"Destination": "missing"}})
    with pytest.raises(InvalidParameterValueError, match=r"^BatchSize:"):
        await make(ops, BatchSize=0)
    assert (await ops("ListEventSourceMappings"))["EventSourceMappings"] == []
    assert await consumer_names(ops) == []

    made = await make(ops)
    with pytest.raises(InvalidParameterValueError, match=r"^TumblingWindowInSeconds:"):
        await ops(
            "UpdateEventSourceMapping",
            UUID=made["UUID"],
            ParallelizationFactor=3,
            TumblingWindowInSeconds=10,
        )
    with pytest.raises(InvalidParameterValueError, match=r"^EventSourceArn:"):
        await ops("UpdateEventSourceMapping", UUID=made["UUID"], EventSourceArn="s")
    assert await ops("GetEventSourceMapping", UUID=made["UUID"]) == made


async def test_one_mapping_per_function_and_source(ops: Harness) -> None:
    await ops.create("s", 1)
    first = await make(ops)
    with pytest.raises(ResourceConflictError, match=first["UUID"]):
        await make(ops, EventSourceArn=ARN + "s")
    other = await make(ops, FunctionName="exec:other")
    with pytest.raises(ResourceConflictError):
        await ops("UpdateEventSourceMapping", UUID=other["UUID"], FunctionName=FN)
    # The same function on a consumer of the stream is another event source.
    registered = await ops("RegisterStreamConsumer", StreamARN=ARN + "s", ConsumerName="app")
    on_consumer = await make(ops, EventSourceArn=registered["Consumer"]["ConsumerARN"])
    assert on_consumer["ConsumerARN"] == registered["Consumer"]["ConsumerARN"]
    assert len(await consumer_names(ops)) == 3


async def test_a_mapping_on_a_consumer_arn_uses_that_consumer(ops: Harness) -> None:
    await ops.create("s", 1)
    consumer = (await ops("RegisterStreamConsumer", StreamARN=ARN + "s", ConsumerName="app"))[
        "Consumer"
    ]
    made = await make(ops, EventSourceArn=consumer["ConsumerARN"])
    assert made["EventSourceArn"] == made["ConsumerARN"] == consumer["ConsumerARN"]
    assert await consumer_names(ops) == ["app"]
    await ops("DeleteEventSourceMapping", UUID=made["UUID"])
    assert await consumer_names(ops) == ["app"]

    stale = consumer["ConsumerARN"].rsplit(":", 1)[0] + ":12345"
    with pytest.raises(ResourceNotFoundError, match="Consumer"):
        await make(ops, EventSourceArn=stale)
    again = await make(ops, EventSourceArn=consumer["ConsumerARN"])
    await ops("DeregisterStreamConsumer", ConsumerARN=consumer["ConsumerARN"])
    orphan = await ops("GetEventSourceMapping", UUID=again["UUID"])
    assert orphan["State"] == "Disabled"
    assert orphan["StateTransitionReason"].startswith("PROBLEM: Consumer")


async def test_the_mappings_consumer_counts_toward_the_limit(tmp_path: Path) -> None:
    async for ops in open_harness(tmp_path, max_consumers_per_stream=2):
        await ops.create("s", 1)
        await ops("RegisterStreamConsumer", StreamARN=ARN + "s", ConsumerName="app")
        await make(ops)
        with pytest.raises(LimitExceededError, match="maximum of 2"):
            await make(ops, FunctionName="exec:second")
        assert len((await ops("ListEventSourceMappings"))["EventSourceMappings"]) == 1


async def test_delete_stream_leaves_mappings_that_say_so(ops: Harness) -> None:
    await ops.create("s", 1)
    made = await make(ops, FunctionResponseTypes=["ReportBatchItemFailures"])
    with pytest.raises(ResourceInUseError, match="EnforceConsumerDeletion"):
        await ops("DeleteStream", StreamName="s")
    await ops("DeleteStream", StreamName="s", EnforceConsumerDeletion=True)
    orphan = await ops("GetEventSourceMapping", UUID=made["UUID"])
    assert orphan["State"] == "Disabled"
    assert orphan["StateTransitionReason"] == f"PROBLEM: Stream {ARN}s was deleted"
    # A stream of the same name is another incarnation: still not this mapping's.
    await ops.create("s", 1)
    assert (await ops("GetEventSourceMapping", UUID=made["UUID"]))["State"] == "Disabled"
    with pytest.raises(ResourceConflictError):
        await make(ops)
    await ops("DeleteEventSourceMapping", UUID=made["UUID"])
    assert await consumer_names(ops) == []
    assert (await make(ops))["State"] == "Enabled"


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=15, deadline=None
)
@given(
    count=st.integers(0, 9),
    page=st.integers(1, 4),
    functions=st.lists(st.sampled_from(["exec:a", "exec:b"]), min_size=9, max_size=9),
)
async def test_listing_pages_through_every_match(
    tmp_path_factory: pytest.TempPathFactory, count: int, page: int, functions: list[str]
) -> None:
    async for ops in open_harness(tmp_path_factory.mktemp("list")):
        await ops.create("s", 1)
        await ops.create("t", 1)
        made: list[dict[str, Any]] = []
        for i in range(count):
            source = "s" if i % 2 == 0 else "t"
            made.append(await make(ops, FunctionName=f"{functions[i]}{i}", EventSourceArn=source))
        first = made[0]["FunctionArn"] if made else "exec:a0"
        cases = [
            {},
            {"EventSourceArn": "s"},
            {"EventSourceArn": ARN + "t"},
            {"FunctionName": first},
        ]
        for filters in cases:
            seen: list[dict[str, Any]] = []
            marker: str | None = None
            for _ in range(count + 2):
                request = {**filters, "MaxItems": page}
                if marker is not None:
                    request["Marker"] = marker
                out = await ops("ListEventSourceMappings", **request)
                assert len(out["EventSourceMappings"]) <= page
                seen += out["EventSourceMappings"]
                marker = out.get("NextMarker")
                if marker is None:
                    break
            else:
                pytest.fail("the listing never ended")
            want = [
                x
                for x in made
                if all(
                    (x["EventSourceArn"] if k == "EventSourceArn" else x["FunctionArn"])
                    == (ARN + v if k == "EventSourceArn" and not v.startswith("arn:") else v)
                    for k, v in filters.items()
                )
            ]
            assert sorted(x["UUID"] for x in seen) == sorted(x["UUID"] for x in want)
            assert len(seen) == len({x["UUID"] for x in seen})


async def test_list_parameters_are_checked(ops: Harness) -> None:
    with pytest.raises(InvalidParameterValueError, match=r"^MaxItems:"):
        await ops("ListEventSourceMappings", MaxItems=0)
    with pytest.raises(InvalidParameterValueError, match=r"^Marker:"):
        await ops("ListEventSourceMappings", Marker="x")
    with pytest.raises(InvalidParameterValueError, match=r"^EventSourceArn:"):
        await ops("ListEventSourceMappings", EventSourceArn="bad name")
