"""Field helpers: types, bounds, and stream addressing by name or ARN."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.config import BrokerConfig
from broker.errors import (
    InvalidArgumentError,
    ResourceNotFoundError,
    ShardlineError,
    ValidationError,
)
from broker.operations import fields as f

CONFIG = BrokerConfig(region="eu-north-1", account="123456789012")


def test_required_and_types() -> None:
    with pytest.raises(ValidationError, match=r"'Name'.*must not be null"):
        f.required_str({}, "Name")
    with pytest.raises(ValidationError, match=r"'Name'.*a string, got int"):
        f.required_str({"Name": 1}, "Name")
    with pytest.raises(ValidationError, match=r"'Records\[2\]\.Data'"):
        f.required_bytes({"Data": "x"}, "Data", label="Records[2].Data")
    with pytest.raises(ValidationError, match="an integer, got bool"):
        f.required_int({"N": True}, "N")
    with pytest.raises(ValidationError, match="a boolean"):
        f.optional_bool({"B": 1}, "B")
    with pytest.raises(ValidationError, match="a list"):
        f.required_list({"L": {}}, "L")
    with pytest.raises(ValidationError, match="keys"):
        f.optional_map({"M": {1: "x"}}, "M")
    assert f.required_bytes({"Data": bytearray(b"ab")}, "Data") == b"ab"
    assert f.optional_int({}, "N", default=7) == 7
    assert f.optional_bool({}, "B") is False
    assert f.optional_str({"S": None}, "S") is None


def test_bounds() -> None:
    with pytest.raises(
        InvalidArgumentError, match="N 11 is out of range: it must be between 1 and 10"
    ):
        f.required_int({"N": 11}, "N", low=1, high=10)
    with pytest.raises(InvalidArgumentError, match="at least 1"):
        f.optional_int({"N": 0}, "N", low=1)
    with pytest.raises(InvalidArgumentError, match="at most 3"):
        f.required_str({"S": "abcd"}, "S", max_len=3)
    with pytest.raises(InvalidArgumentError, match="at least 1"):
        f.required_str({"S": ""}, "S")
    with pytest.raises(InvalidArgumentError, match="between 1 and 2 entries"):
        f.required_list({"L": [1, 2, 3]}, "L", min_len=1, max_len=2)
    with pytest.raises(InvalidArgumentError, match="one of A, B"):
        f.required_choice({"C": "D"}, "C", ("A", "B"))
    assert f.required_shard({"S": "shardId-000000000012"}, "S") == 12
    with pytest.raises(InvalidArgumentError, match="Exclusive"):
        f.optional_shard({"Exclusive": "shardId-1"}, "Exclusive")


def test_stream_addressing() -> None:
    arn = "arn:aws:kinesis:eu-north-1:123456789012:stream/orders.v2"
    assert f.required_stream(CONFIG, {"StreamName": "orders.v2"}) == "orders.v2"
    assert f.required_stream(CONFIG, {"StreamARN": arn}) == "orders.v2"
    assert f.stream_name(CONFIG, {}, required=False) is None
    with pytest.raises(ResourceNotFoundError, match="us-east-1"):
        f.required_stream(CONFIG, {"StreamARN": arn.replace("eu-north-1", "us-east-1")})
    with pytest.raises(ResourceNotFoundError, match="account 000000000000"):
        f.required_stream(CONFIG, {"StreamARN": arn.replace("123456789012", "000000000000")})
    for bad in (
        "orders",
        "arn:aws:kinesis:eu-north-1:123456789012:stream/",
        "arn:aws:kinesis:eu-north-1:123456789012:stream/a b",
        "arn:aws:kinesis:eu-north-1:1234:stream/a",
        "arn:aws:kinesis:eu-north-1:123456789012:table/a",
        "arn:aws:kinesis:eu-north-1:123456789012:stream/a" + "x" * 3000,
    ):
        with pytest.raises(InvalidArgumentError):
            f.required_stream(CONFIG, {"StreamARN": bad})
    with pytest.raises(InvalidArgumentError, match="StreamName"):
        f.required_stream(CONFIG, {"StreamName": "a/b"})
    with pytest.raises(ValidationError, match="StreamARN"):
        f.required_stream(CONFIG, {"StreamARN": 5})


HELPERS: list[Any] = [
    lambda r: f.required_str(r, "X"),
    lambda r: f.optional_str(r, "X", max_len=3),
    lambda r: f.required_int(r, "X", low=0, high=5),
    lambda r: f.optional_int(r, "X"),
    lambda r: f.optional_bool(r, "X"),
    lambda r: f.required_bytes(r, "X"),
    lambda r: f.required_list(r, "X", max_len=2),
    lambda r: f.optional_map(r, "X"),
    lambda r: f.required_shard(r, "X"),
    lambda r: f.required_choice(r, "X", ("A",)),
    lambda r: f.required_stream(CONFIG, {"StreamName": r.get("X")}),
    lambda r: f.required_stream(CONFIG, {"StreamARN": r.get("X")}),
]


@given(
    st.sampled_from(range(len(HELPERS))),
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(),
        st.binary(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.integers(), st.integers(), max_size=2),
    ),
)
def test_wrong_values_raise_only_named_errors(helper: int, value: object) -> None:
    try:
        HELPERS[helper]({"X": value})
    except ShardlineError as exc:
        assert exc.http_status == 400
