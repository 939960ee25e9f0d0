"""docs/kinesis-compat.md lists every Kinesis operation, and says the truth about each."""

from __future__ import annotations

import re
from pathlib import Path

import botocore.session

from broker.operations import OPERATIONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "kinesis-compat.md"
MODEL = botocore.session.get_session().get_service_model("kinesis")


def table() -> dict[str, str]:
    """Operation -> its mark (✓, ≈ or ✗) from the doc's operations table."""
    rows: dict[str, str] = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"\| ([A-Za-z, ]+) \| ([✓≈✗]) \|", line)
        if match:
            for name in match.group(1).split(","):
                rows[name.strip()] = match.group(2)
    return rows


def test_every_operation_of_the_model_is_in_the_table() -> None:
    missing = set(MODEL.operation_names) - set(table())
    assert not missing, f"docs/kinesis-compat.md does not list {sorted(missing)}"


def test_the_table_names_only_operations_of_the_model() -> None:
    assert set(table()) <= set(MODEL.operation_names)


def test_what_the_table_calls_supported_is_served_and_the_rest_is_not() -> None:
    for name, mark in table().items():
        if mark in "✓≈":
            assert name in OPERATIONS, f"{name} is marked {mark} but not served"
        elif name not in ("StartStreamEncryption", "StopStreamEncryption"):
            # Served only to refuse by name (no KMS); every other ✗ is an unknown operation.
            assert name not in OPERATIONS, f"{name} is marked ✗ but served"


def test_the_options_table_names_fields_of_those_operations() -> None:
    text = DOC.read_text().split("## Options", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([^|]+) \| ([A-Za-z]+) \| ([✓≈✗]) \|", text, re.MULTILINE)
    assert rows
    for operations, field, _mark in rows:
        names = (
            [n for n in MODEL.operation_names if field in _members(n)]
            if operations.startswith("every")
            else [n.strip() for n in operations.split(",")]
        )
        assert names, f"no operation has {field}"
        for name in names:
            assert field in _members(name), f"{name} has no field {field}"


def _members(operation: str) -> list[str]:
    shape = MODEL.operation_model(operation).input_shape
    return list(shape.members) if shape is not None else []
