"""``shardline consumers ...``, driven through real processes against a real server."""

from __future__ import annotations

import json

from tests.test_cli import Server

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/"


def test_register_list_describe_deregister(server: Server) -> None:
    assert server.run("streams", "create", "orders", "--shards", "2").returncode == 0

    registered = server.run("consumers", "register", "orders", "billing")
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.startswith("registered billing on orders: ")
    arn = registered.stdout.split(": ", 1)[1].strip()
    assert arn.startswith(ARN + "orders/consumer/billing:")

    as_json = server.run("consumers", "register", ARN + "orders", "audit", "--json")
    assert as_json.returncode == 0, as_json.stderr
    audit = json.loads(as_json.stdout)["Consumer"]
    assert list(audit) == [
        "ConsumerName",
        "ConsumerARN",
        "ConsumerStatus",
        "ConsumerCreationTimestamp",
    ]
    assert (audit["ConsumerName"], audit["ConsumerStatus"]) == ("audit", "ACTIVE")
    assert isinstance(audit["ConsumerCreationTimestamp"], int)

    table = server.run("consumers", "list", "orders")
    assert table.returncode == 0, table.stderr
    header, rule, *rows = table.stdout.splitlines()
    assert header.split() == ["consumer", "status", "created", "ARN"]
    assert set(rule) <= {"-", " "}
    assert [row.split()[0] for row in rows] == ["audit", "billing"]
    assert rows[1].split()[1:2] == ["ACTIVE"] and rows[1].split()[-1] == arn

    listed = json.loads(server.run("consumers", "list", "orders", "--json").stdout)
    assert [c["ConsumerName"] for c in listed["Consumers"]] == ["audit", "billing"]
    assert listed["Consumers"][0] == audit

    described = server.run("consumers", "describe", "orders", "billing")
    assert described.returncode == 0, described.stderr
    assert "billing  ACTIVE  created " in described.stdout
    assert arn in described.stdout and f"stream  {ARN}orders" in described.stdout
    description = json.loads(
        server.run("consumers", "describe", "orders", "billing", "--json").stdout
    )["ConsumerDescription"]
    assert (description["ConsumerARN"], description["StreamARN"]) == (arn, ARN + "orders")

    summary = json.loads(server.run("streams", "describe", "orders", "--json").stdout)
    assert summary["StreamDescriptionSummary"]["ConsumerCount"] == 2

    refused = server.run("streams", "delete", "orders")
    assert refused.returncode == 1
    assert "ResourceInUseException" in refused.stderr

    gone = server.run("consumers", "deregister", "orders", "billing")
    assert gone.returncode == 0 and gone.stdout.strip() == "deregistered billing from orders"
    missing = server.run("consumers", "describe", "orders", "billing")
    assert missing.returncode == 1 and "ResourceNotFoundException" in missing.stderr

    assert server.run("streams", "delete", "orders", "--force").returncode == 0
    assert server.run("streams", "create", "orders", "--shards", "1").returncode == 0
    empty = server.run("consumers", "list", "orders")
    assert empty.returncode == 0 and empty.stdout.strip() == "(no consumers)"


def test_errors_name_the_error_and_exit_non_zero(server: Server) -> None:
    no_stream = server.run("consumers", "register", "nope", "c")
    assert no_stream.returncode == 1 and "ResourceNotFoundException" in no_stream.stderr
    assert server.run("streams", "create", "s", "--shards", "1").returncode == 0
    bad_name = server.run("consumers", "register", "s", "not ok")
    assert bad_name.returncode == 1 and "InvalidArgumentException" in bad_name.stderr
    assert server.run("consumers", "register", "s", "c").returncode == 0
    taken = server.run("consumers", "register", "s", "c")
    assert taken.returncode == 1 and "ResourceInUseException" in taken.stderr
    unknown = server.run("consumers", "deregister", "s", "zz")
    assert unknown.returncode == 1 and "ResourceNotFoundException" in unknown.stderr
