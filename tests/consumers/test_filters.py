"""Lambda event filtering (``consumers.filters``).

Table tests of each operator, from the examples of AWS's filter rule syntax,
create-time errors, the laziness of data decoding, and a property test that
compares the compiled predicate with a small reference interpreter written
here the other way round (recursive over the pattern, equality by JSON text).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.client import Record
from broker.errors import InvalidParameterValueError
from consumers.filters import compile_filter_criteria


def criteria(*patterns: Any) -> dict[str, Any]:
    return {"Filters": [{"Pattern": json.dumps(p)} for p in patterns]}


def record(data: Any, key: str = "1", sequence: str = "100", arrival_ms: int = 0) -> Record:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return Record(sequence, arrival_ms, raw, key)


def keeps(pattern: Any, data: Any, **metadata: Any) -> bool:
    keep = compile_filter_criteria(criteria(pattern))
    assert keep is not None
    return keep(record(data, **metadata))


# -- operators, as AWS's filter rule syntax table shows them ------------------------

TABLE = [
    # (pattern over data, data, kept?)
    ({"UserID": [None]}, {"UserID": None}, True),
    ({"UserID": [None]}, {"UserID": "null"}, False),
    ({"UserID": [None]}, {}, False),
    ({"LastName": [""]}, {"LastName": ""}, True),
    ({"LastName": [""]}, {"LastName": " "}, False),
    ({"Name": ["Alice"]}, {"Name": "Alice"}, True),
    ({"Name": ["Alice"]}, {"Name": "alice"}, False),  # no case folding
    (
        {"Location": ["New York"], "Day": ["Monday"]},
        {"Location": "New York", "Day": "Monday"},
        True,
    ),
    (
        {"Location": ["New York"], "Day": ["Monday"]},
        {"Location": "New York", "Day": "Sunday"},
        False,
    ),
    ({"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Debit"}, True),
    ({"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Cash"}, False),
    ({"Weather": [{"anything-but": ["Raining"]}]}, {"Weather": "Sunny"}, True),
    ({"Weather": [{"anything-but": ["Raining"]}]}, {"Weather": "Raining"}, False),
    ({"Weather": [{"anything-but": "Raining"}]}, {"Weather": "Raining"}, False),
    ({"Weather": [{"anything-but": ["Raining"]}]}, {}, False),  # needs the field
    ({"Code": [{"anything-but": [100, 200]}]}, {"Code": 300}, True),
    ({"Code": [{"anything-but": [100, 200]}]}, {"Code": 200}, False),
    ({"Price": [{"numeric": ["=", 100]}]}, {"Price": 100}, True),
    ({"Price": [{"numeric": ["=", 100]}]}, {"Price": 100.0}, True),
    ({"Price": [{"numeric": ["=", 100]}]}, {"Price": "100"}, False),
    ({"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 20}, True),
    ({"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 10}, False),
    ({"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 20.5}, False),
    ({"Price": [{"numeric": [">=", 0]}]}, {"Price": True}, False),  # a boolean is no number
    ({"ProductName": [{"exists": True}]}, {"ProductName": "Pen"}, True),
    ({"ProductName": [{"exists": True}]}, {"ProductName": None}, True),
    ({"ProductName": [{"exists": True}]}, {"Other": 1}, False),
    ({"ProductName": [{"exists": False}]}, {"Other": 1}, True),
    ({"ProductName": [{"exists": False}]}, {"ProductName": "Pen"}, False),
    ({"Region": [{"prefix": "us-"}]}, {"Region": "us-east-1"}, True),
    ({"Region": [{"prefix": "us-"}]}, {"Region": "eu-west-1"}, False),
    ({"Region": [{"anything-but": {"prefix": "us-"}}]}, {"Region": "eu-west-1"}, True),
    ({"Region": [{"anything-but": {"prefix": "us-"}}]}, {"Region": "us-east-1"}, False),
    # Numbers match as their JSON text, as Lambda compares them: 5 is not 5.0 nor "5".
    ({"n": [5]}, {"n": 5}, True),
    ({"n": [5]}, {"n": 5.0}, False),
    ({"n": [5]}, {"n": "5"}, False),
    ({"n": ["5"]}, {"n": 5}, False),
    ({"n": [True]}, {"n": True}, True),
    ({"n": [1]}, {"n": True}, False),
    # A list in the record matches when any element does.
    ({"tags": ["red"]}, {"tags": ["blue", "red"]}, True),
    ({"tags": ["red"]}, {"tags": ["blue"]}, False),
    # Nesting, as the Kinesis page's example.
    (
        {"order": {"type": ["buy"]}},
        {"record": 12345, "order": {"type": "buy", "stock": "ANYCO", "quantity": 1000}},
        True,
    ),
    ({"order": {"type": ["buy"]}}, {"record": 1, "order": {"type": "sell"}}, False),
    ({"order": {"type": ["buy"]}}, {"order": "buy"}, False),
    ({"order": {"type": [{"exists": False}]}}, {"order": "buy"}, True),
    ({"items": {"sku": ["A1"]}}, {"items": [{"sku": "B2"}, {"sku": "A1"}]}, True),
    ({"status": ["ok"]}, {"status": {"ok": True}}, False),  # an object is no leaf value
]


@pytest.mark.parametrize(("pattern", "data", "kept"), TABLE)
def test_operator_table(pattern: Any, data: Any, kept: bool) -> None:
    assert keeps({"data": pattern}, data) is kept


def test_metadata_fields() -> None:
    assert keeps({"partitionKey": ["user-1"]}, b"not json", key="user-1")
    assert not keeps({"partitionKey": ["user-1"]}, b"not json", key="user-2")
    assert keeps({"partitionKey": [{"prefix": "user-"}]}, {}, key="user-9")
    assert keeps({"sequenceNumber": ["100"]}, {}, sequence="100")
    assert keeps({"kinesisSchemaVersion": ["1.0"]}, {})
    window = {"approximateArrivalTimestamp": [{"numeric": [">=", 1700000000, "<", 1700000060]}]}
    assert keeps(window, {}, arrival_ms=1_700_000_030_500)
    assert not keeps(window, {}, arrival_ms=1_700_000_060_000)
    both = {"partitionKey": ["a"], "data": {"kind": ["x"]}}
    assert keeps(both, {"kind": "x"}, key="a")
    assert not keeps(both, {"kind": "x"}, key="b")
    assert not keeps(both, {"kind": "y"}, key="a")


def test_data_patterns_match_only_json_objects() -> None:
    pattern = {"data": {"a": [{"exists": False}]}}
    assert keeps(pattern, {"b": 1})
    for data in (b"\xff\xfe not utf-8", b"plain text", b"[1, 2]", b"42", b'"a string"', b""):
        assert not keeps(pattern, data)
    assert keeps({"data": {}}, {"anything": 1})
    assert not keeps({"data": {}}, b"not json")


def test_filters_are_ored_and_empty_criteria_filter_nothing() -> None:
    keep = compile_filter_criteria(
        criteria({"data": {"kind": ["a"]}}, {"partitionKey": ["vip"]}, {"data": {"n": [1]}})
    )
    assert keep is not None
    assert keep(record({"kind": "a"}, key="x"))
    assert keep(record(b"not json", key="vip"))
    assert keep(record({"n": 1}, key="x"))
    assert not keep(record({"kind": "b", "n": 2}, key="x"))
    assert compile_filter_criteria(None) is None
    assert compile_filter_criteria({"Filters": []}) is None
    assert compile_filter_criteria({}) is None
    keep_all = compile_filter_criteria(criteria({}))
    assert keep_all is not None and keep_all(record(b"anything"))


class CountingBytes(bytes):
    """Data that counts how often it is decoded (``json.loads`` decodes bytes first)."""

    decodes = 0

    def decode(self, *args: Any, **kwargs: Any) -> str:
        CountingBytes.decodes += 1
        return super().decode(*args, **kwargs)


def test_data_is_decoded_only_when_needed_and_at_most_once() -> None:
    CountingBytes.decodes = 0
    data = CountingBytes(b'{"kind": "a", "n": 2}')
    meta_only = compile_filter_criteria(
        criteria({"partitionKey": ["k"]}, {"partitionKey": [{"prefix": "x"}]})
    )
    assert meta_only is not None and meta_only(Record("1", 0, data, "k"))
    assert not meta_only(Record("1", 0, data, "j"))
    assert CountingBytes.decodes == 0
    gated = compile_filter_criteria(criteria({"partitionKey": ["vip"], "data": {"kind": ["a"]}}))
    assert gated is not None and not gated(Record("1", 0, data, "other"))
    assert CountingBytes.decodes == 0  # the metadata failed first: no decoding
    several = compile_filter_criteria(
        criteria({"data": {"kind": ["b"]}}, {"data": {"n": [3]}}, {"data": {"n": [2]}})
    )
    assert several is not None and several(Record("1", 0, data, "k"))
    assert CountingBytes.decodes == 1


@pytest.mark.parametrize(
    ("filter_criteria", "why"),
    [
        ("not an object", "must be an object"),
        ({"Filters": "x"}, "Filters must be a list"),
        ({"Filters": [{}]}, "Pattern string"),
        ({"Filters": [{"Pattern": 5}]}, "Pattern string"),
        ({"Filters": [{"Pattern": "{not json"}]}, "not valid JSON"),
        ({"Filters": [{"Pattern": "[1]"}]}, "JSON object"),
        ({"Filters": [{"Pattern": '{"data": {"a": [NaN]}}'}]}, "not valid JSON"),
        ({"Filters": [{"Pattern": " " * 4097}]}, "over 4096"),
        (criteria({"data": ["x"]}), "data must be an object"),
        (criteria({"data": "x"}), "data must be an object"),
        (criteria({"eventSource": ["aws:kinesis"]}), "not a field of a Kinesis record"),
        (criteria({"partitionKey": "k"}), "list of values"),
        (criteria({"data": {"a": "x"}}), "list of values"),
        (criteria({"data": {"a": []}}), "empty list"),
        (criteria({"data": {"a": [["x"]]}}), "cannot hold a list"),
        (criteria({"data": {"a": [{"prefix": "x", "exists": True}]}}), "exactly one key"),
        (criteria({"data": {"a": [{"suffix": "x"}]}}), "unknown operator"),
        (criteria({"data": {"a": [{"equals-ignore-case": "x"}]}}), "unknown operator"),
        (criteria({"data": {"a": [{"prefix": 1}]}}), "prefix takes a string"),
        (criteria({"data": {"a": [{"exists": "yes"}]}}), "exists takes true or false"),
        (criteria({"data": {"a": [{"anything-but": []}]}}), "at least one value"),
        (criteria({"data": {"a": [{"anything-but": [None]}]}}), "strings and numbers"),
        (criteria({"data": {"a": [{"anything-but": {"suffix": "x"}}]}}), "prefix"),
        (criteria({"data": {"a": [{"numeric": [">", 1, "<"]}]}}), "numeric takes"),
        (criteria({"data": {"a": [{"numeric": ["~", 1]}]}}), "numeric operator"),
        (criteria({"data": {"a": [{"numeric": [">", "1"]}]}}), "not a number"),
        (criteria({"data": {"a": [{"numeric": [">", 1, ">", 2]}]}}), "lower and one upper"),
        (criteria({"data": {"a": [{"numeric": [">", 5, "<", 1]}]}}), "is empty"),
    ],
)
def test_invalid_criteria_are_refused_at_create_time(filter_criteria: Any, why: str) -> None:
    with pytest.raises(InvalidParameterValueError) as caught:
        compile_filter_criteria(filter_criteria)
    assert caught.value.wire_name == "InvalidParameterValueException"
    assert caught.value.message.startswith("FilterCriteria")
    assert why in caught.value.message


# -- the property: compiled == interpreted ---------------------------------------------

KEYS = ["a", "b", "c"]
STRINGS = ["", "x", "xy", "y", "1"]
NUMBERS: list[Any] = [0, 1, 2, 1.0, 2.5, -3]
scalars = st.one_of(st.sampled_from(STRINGS), st.sampled_from(NUMBERS), st.booleans(), st.none())
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=8,
)
numbers = st.sampled_from([n for n in NUMBERS if n is not True])


@st.composite
def numeric_operators(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        return {"numeric": [draw(st.sampled_from(["=", "<", "<=", ">", ">="])), draw(numbers)]}
    low, high = sorted([draw(numbers), draw(numbers)])
    return {
        "numeric": [
            draw(st.sampled_from([">", ">="])),
            low,
            draw(st.sampled_from(["<", "<="])),
            high,
        ]
    }


operators = st.one_of(
    scalars,
    st.builds(lambda p: {"prefix": p}, st.sampled_from(STRINGS)),
    st.builds(
        lambda v: {"anything-but": v},
        st.one_of(
            st.sampled_from(STRINGS),
            st.lists(st.one_of(st.sampled_from(STRINGS), numbers), min_size=1, max_size=3),
            st.builds(lambda p: {"prefix": p}, st.sampled_from(STRINGS)),
        ),
    ),
    numeric_operators(),
    st.builds(lambda e: {"exists": e}, st.booleans()),
)
leaves = st.lists(operators, min_size=1, max_size=3)
object_patterns = st.recursive(
    st.dictionaries(st.sampled_from(KEYS), leaves, max_size=3),
    lambda inner: st.dictionaries(st.sampled_from(KEYS), st.one_of(leaves, inner), max_size=3),
    max_leaves=6,
)
patterns = st.fixed_dictionaries(
    {},
    optional={
        "partitionKey": leaves,
        "approximateArrivalTimestamp": leaves,
        "data": object_patterns,
    },
)
datas = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), json_values, max_size=3).map(
        lambda d: json.dumps(d).encode()
    ),
    st.sampled_from([b"not json", b"[1]", b"\xff"]),
)
test_records = st.builds(
    Record, st.just("7"), st.sampled_from([0, 1000, 2500]), datas, st.sampled_from(STRINGS[1:])
)

MISSING = object()


def reference_keeps(pattern: dict[str, Any], rec: Record) -> bool:
    """Lambda's matching as the documentation words it, interpreted for one record."""
    fields: dict[str, Any] = {
        "partitionKey": rec.partition_key,
        "sequenceNumber": rec.sequence_number,
        "approximateArrivalTimestamp": rec.approximate_arrival_timestamp / 1000,
        "kinesisSchemaVersion": "1.0",
    }
    if "data" in pattern:
        try:
            data = json.loads(rec.data)
        except ValueError:
            return False
        if not isinstance(data, dict):
            return False
        fields["data"] = data
    return reference_object(pattern, fields)


def reference_object(pattern: dict[str, Any], obj: Any) -> bool:
    for key, sub in pattern.items():
        value = obj.get(key, MISSING) if isinstance(obj, dict) else MISSING
        if isinstance(sub, dict):
            if isinstance(value, list):
                if not any(isinstance(v, dict) and reference_object(sub, v) for v in value):
                    return False
            elif not reference_object(sub, value if isinstance(value, dict) else {}):
                return False
        elif not reference_leaf(sub, value):
            return False
    return True


def reference_leaf(alternatives: list[Any], value: Any) -> bool:
    exists = [a["exists"] for a in alternatives if isinstance(a, dict) and "exists" in a]
    if value is MISSING:
        return False in exists
    if True in exists:
        return True
    values = value if isinstance(value, list) else [value]
    return any(
        reference_scalar(a, v)
        for a in alternatives
        for v in values
        if not isinstance(v, dict | list)
    )


def reference_scalar(alternative: Any, value: Any) -> bool:
    text = json.dumps(value)
    if not isinstance(alternative, dict):
        return json.dumps(alternative) == text
    [(name, argument)] = alternative.items()
    is_string = isinstance(value, str)
    if name == "prefix":
        return is_string and value.startswith(argument)
    if name == "anything-but":
        if isinstance(argument, dict):
            return not (is_string and value.startswith(argument["prefix"]))
        excluded = argument if isinstance(argument, list) else [argument]
        return all(json.dumps(x) != text for x in excluded)
    if name == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        for op, bound in zip(argument[::2], argument[1::2], strict=True):
            if op == "=" and value != bound:
                return False
            if op == "<" and not value < bound:
                return False
            if op == "<=" and not value <= bound:
                return False
            if op == ">" and not value > bound:
                return False
            if op == ">=" and not value >= bound:
                return False
        return True
    return False  # exists: handled by reference_leaf


@settings(max_examples=600, deadline=None)
@given(filters=st.lists(patterns, min_size=1, max_size=3), recs=st.lists(test_records, max_size=6))
def test_compiled_filters_agree_with_the_reference(
    filters: list[dict[str, Any]], recs: list[Record]
) -> None:
    keep = compile_filter_criteria(criteria(*filters))
    assert keep is not None
    for rec in recs:
        assert keep(rec) == any(reference_keeps(p, rec) for p in filters), (filters, rec)
