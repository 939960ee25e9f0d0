"""``shardline mappings ...``, driven through real processes against a real server."""

from __future__ import annotations

import json
from typing import Any

from tests.test_cli import Server

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/"
FN = "python:handlers.orders:handle"


def ok(server: Server, *args: str) -> dict[str, Any]:
    done = server.run("mappings", *args)
    assert done.returncode == 0, done.stderr
    body: dict[str, Any] = json.loads(done.stdout)
    return body


def refused(server: Server, *args: str) -> str:
    done = server.run("mappings", *args)
    assert done.returncode == 1, done.stdout
    assert done.stdout == ""
    return done.stderr


def test_create_get_update_list_delete(server: Server) -> None:
    assert server.run("streams", "create", "orders", "--shards", "2").returncode == 0
    assert server.run("streams", "create", "failures", "--shards", "1").returncode == 0
    made = ok(
        server,
        "create",
        "--function-name", FN,
        "--event-source-arn", "orders",
        "--starting-position", "AT_TIMESTAMP",
        "--starting-position-timestamp", "2024-01-01T00:00:00+00:00",
        "--batch-size", "250",
        "--maximum-batching-window-in-seconds", "5",
        "--parallelization-factor", "3",
        "--bisect-batch-on-function-error",
        "--maximum-retry-attempts", "2",
        "--maximum-record-age-in-seconds", "120",
        "--destination-config", '{"OnFailure": {"Destination": "failures"}}',
        "--function-response-types", "ReportBatchItemFailures",
        "--filter-criteria", '{"Filters": [{"Pattern": "{\\"partitionKey\\": [\\"a\\"]}"}]}',
        "--no-enabled",
    )  # fmt: skip
    uuid = made["UUID"]
    assert made["FunctionArn"] == FN and made["EventSourceArn"] == ARN + "orders"
    assert made["StartingPositionTimestamp"] == 1_704_067_200.0
    assert (made["BatchSize"], made["MaximumBatchingWindowInSeconds"]) == (250, 5)
    assert (made["ParallelizationFactor"], made["BisectBatchOnFunctionError"]) == (3, True)
    assert (made["MaximumRetryAttempts"], made["MaximumRecordAgeInSeconds"]) == (2, 120)
    assert made["DestinationConfig"] == {"OnFailure": {"Destination": ARN + "failures"}}
    assert made["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert made["FilterCriteria"] == {"Filters": [{"Pattern": '{"partitionKey": ["a"]}'}]}
    assert made["State"] == "Disabled"
    assert made["ConsumerARN"].startswith(f"{ARN}orders/consumer/mapping-{uuid}:")
    assert ok(server, "get", "--uuid", uuid) == made

    changed = ok(
        server, "update", "--uuid", uuid, "--enabled", "--batch-size", "10",
        "--no-bisect-batch-on-function-error", "--function-response-types",
    )  # fmt: skip
    assert changed["State"] == "Enabled" and changed["BatchSize"] == 10
    assert changed["BisectBatchOnFunctionError"] is False
    assert changed["FunctionResponseTypes"] == []
    assert changed["ParallelizationFactor"] == 3

    other = ok(
        server, "create", "--function-name", "exec:./other", "--event-source-arn", "failures",
        "--starting-position", "LATEST",
    )  # fmt: skip
    everything = ok(server, "list")["EventSourceMappings"]
    assert sorted(m["UUID"] for m in everything) == sorted([uuid, other["UUID"]])
    on_orders = ok(server, "list", "--event-source-arn", ARN + "orders")["EventSourceMappings"]
    assert [m["UUID"] for m in on_orders] == [uuid]
    by_function = ok(server, "list", "--function-name", "exec:./other")["EventSourceMappings"]
    assert [m["UUID"] for m in by_function] == [other["UUID"]]
    first = ok(server, "list", "--max-items", "1")
    assert len(first["EventSourceMappings"]) == 1 and "NextMarker" in first
    rest = ok(server, "list", "--marker", first["NextMarker"])
    assert "NextMarker" not in rest
    assert {m["UUID"] for m in first["EventSourceMappings"] + rest["EventSourceMappings"]} == {
        uuid,
        other["UUID"],
    }

    assert ok(server, "delete", "--uuid", uuid)["State"] == "Deleting"
    assert "ResourceNotFoundException" in refused(server, "get", "--uuid", uuid)
    consumers = server.run("consumers", "list", "orders", "--json")
    assert json.loads(consumers.stdout)["Consumers"] == []


def test_errors_name_the_parameter(server: Server) -> None:
    assert server.run("streams", "create", "s", "--shards", "1").returncode == 0
    base = ["create", "--function-name", FN, "--event-source-arn", "s"]
    err = refused(server, *base, "--starting-position", "LATEST", "--batch-size", "0")
    assert "InvalidParameterValueException: BatchSize: 0 is out of range" in err
    err = refused(
        server, *base, "--starting-position", "LATEST", "--maximum-record-age-in-seconds", "30"
    )
    assert "InvalidParameterValueException: MaximumRecordAgeInSeconds" in err
    err = refused(
        server, *base, "--starting-position", "LATEST",
        "--tumbling-window-in-seconds", "60", "--parallelization-factor", "2",
    )  # fmt: skip
    assert "TumblingWindowInSeconds" in err and "ParallelizationFactor 1" in err
    err = refused(server, *base, "--starting-position", "LATEST", "--filter-criteria", "{")
    assert "--filter-criteria: not valid JSON" in err
    err = refused(
        server, "create", "--function-name", "lambda-fn", "--event-source-arn", "s",
        "--starting-position", "LATEST",
    )  # fmt: skip
    assert "InvalidParameterValueException: FunctionName" in err
    # The served broker checks patterns with the worker's filter compiler, not only as JSON.
    pattern = json.dumps({"data": {"n": [{"numeric": [">", "ten"]}]}})
    criteria = json.dumps({"Filters": [{"Pattern": pattern}]})
    err = refused(server, *base, "--starting-position", "LATEST", "--filter-criteria", criteria)
    assert "InvalidParameterValueException: FilterCriteria" in err

    ok(server, *base, "--starting-position", "LATEST")
    err = refused(server, *base, "--starting-position", "TRIM_HORIZON")
    assert "ResourceConflictException" in err
    assert "ResourceNotFoundException" in refused(
        server, "delete", "--uuid", "00000000-0000-4000-8000-000000000000"
    )
    assert ok(server, "list", "--function-name", "exec:none") == {"EventSourceMappings": []}
