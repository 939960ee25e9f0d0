"""Lambda event filtering for Kinesis mappings: ``FilterCriteria`` compiled to a predicate.

A mapping's ``FilterCriteria`` is ``{"Filters": [{"Pattern": "<JSON>"}, ...]}``.
Each pattern uses EventBridge's syntax over the record as Lambda shows it to
filters (reference §3.3): the ``kinesis`` fields ``partitionKey``,
``sequenceNumber``, ``approximateArrivalTimestamp`` (epoch seconds) and
``kinesisSchemaVersion``, and ``data`` *decoded as JSON*. A record is kept when
it matches any filter; the batcher counts the others as processed.

**Patterns.** A pattern is a JSON object. A key whose value is an object
descends into the record's field of that name; a key whose value is a list
names the field's acceptable values, any of which may match (an OR). Keys of
one object must all match (an AND). List elements are:

* a string, number, ``true``/``false`` or ``null``: equal to the value, exactly:
  no case folding, and numbers compared as their JSON text (``5`` is not
  ``5.0`` and not ``"5"``), as Lambda does; ``""`` is the empty string;
* ``{"prefix": "abc"}``: a string that starts with it;
* ``{"anything-but": v}``, ``v`` a string, a number or a list of them: any value
  not among them; ``{"anything-but": {"prefix": "abc"}}``: anything but a string
  starting with it;
* ``{"numeric": [">", 0, "<=", 5]}``: a number (not a boolean) within the bounds;
  one comparison (``=``, ``<``, ``<=``, ``>``, ``>=``) or a lower and an upper one;
* ``{"exists": true}`` / ``{"exists": false}``: the field is present / absent.

Where the record's value is a list, the field matches when any element does.
Operators other than ``exists`` match leaf values only (strings, numbers,
booleans, null), never an object. An ``anything-but`` needs the field to be
present. Where EventBridge's documentation leaves a corner open, these are
shardline's choices.

**``data``.** A pattern with a ``data`` key must give it an object (a list there
is a create-time error). Such a filter matches only records whose data
decodes to a JSON *object*; any other record (not UTF-8 JSON, or JSON that is
not an object) fails that filter, as Lambda drops non-JSON data that a data
pattern looks at. Top-level keys other than the fields above are refused at
create time: Kinesis records have no other field to match.

**Cost.** Patterns are compiled once into closures; exact values become one
set lookup. Metadata is checked before data, and a record's data is decoded
only when a filter whose metadata matched needs it, at most once per record:
metadata-only criteria never decode anything.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Hashable
from typing import Any, Final

from broker.client import Record
from broker.errors import InvalidParameterValueError

#: Lambda's bound on one pattern's JSON text.
MAX_PATTERN_CHARS: Final = 4096

#: What a leaf matcher sees for a field the record does not have.
ABSENT: Final[Any] = object()
_NOT_JSON: Final[Any] = object()
_UNDECODED: Final[Any] = object()

Matcher = Callable[[Any], bool]
RecordPredicate = Callable[[Record], bool]

_METADATA: Final[dict[str, Callable[[Record], Any]]] = {
    "partitionKey": operator.itemgetter(3),
    "sequenceNumber": operator.itemgetter(0),
    "approximateArrivalTimestamp": lambda record: record[1] / 1000,
    "kinesisSchemaVersion": lambda record: "1.0",
}

_LOWER: Final = {">": operator.gt, ">=": operator.ge}
_UPPER: Final = {"<": operator.lt, "<=": operator.le}
_COMPARISONS: Final = {**_LOWER, **_UPPER, "=": operator.eq}


class PatternError(Exception):
    """Why a pattern is invalid; becomes an ``InvalidParameterValueException``."""


def compile_filter_criteria(criteria: dict[str, Any] | None) -> RecordPredicate | None:
    """The predicate that keeps a record matching any filter; None when nothing filters.

    Raises ``InvalidParameterValueError`` naming ``FilterCriteria`` and the
    reason when the criteria or one of their patterns is malformed.
    """
    if criteria is None:
        return None
    if not isinstance(criteria, dict):
        raise _invalid("must be an object with a Filters list")
    filters = criteria.get("Filters")
    if filters is None or filters == []:
        return None
    if not isinstance(filters, list):
        raise _invalid("Filters must be a list")
    compiled: list[tuple[RecordPredicate | None, Matcher | None]] = []
    for i, entry in enumerate(filters):
        where = f"Filters[{i}].Pattern"
        if not isinstance(entry, dict) or not isinstance(entry.get("Pattern"), str):
            raise _invalid(f"Filters[{i}] must be an object with a Pattern string")
        text = entry["Pattern"]
        if len(text) > MAX_PATTERN_CHARS:
            raise _invalid(f"{where} is {len(text)} characters, over {MAX_PATTERN_CHARS}")
        try:
            pattern = json.loads(text, parse_constant=_refuse_constant)
        except ValueError as exc:
            raise _invalid(f"{where} is not valid JSON: {exc}") from None
        try:
            compiled.append(compile_pattern(pattern))
        except PatternError as exc:
            raise _invalid(f"{where}: {exc}") from None
    return _any_filter(compiled)


def compile_pattern(pattern: Any) -> tuple[RecordPredicate | None, Matcher | None]:
    """One pattern as (metadata predicate, predicate over the decoded data object).

    Either is None when the pattern says nothing about it. Raises ``PatternError``.
    """
    if not isinstance(pattern, dict):
        raise PatternError("a pattern must be a JSON object")
    checks: list[RecordPredicate] = []
    data: Matcher | None = None
    for key, value in pattern.items():
        if key == "data":
            if not isinstance(value, dict):
                raise PatternError("data must be an object pattern (data is matched as JSON)")
            data = _compile_object(value, "data")
        elif key in _METADATA:
            checks.append(_metadata_check(_METADATA[key], _compile_field(value, key)))
        else:
            raise PatternError(
                f"{key!r} is not a field of a Kinesis record "
                f"(fields: {', '.join([*_METADATA, 'data'])})"
            )
    return _all_of(checks), data


def _any_filter(compiled: list[tuple[RecordPredicate | None, Matcher | None]]) -> RecordPredicate:
    if all(data is None for _, data in compiled):
        metas = [meta for meta, _ in compiled]
        if any(meta is None for meta in metas):
            return _keep_all  # a pattern without conditions matches everything
        checks = [meta for meta in metas if meta is not None]
        if len(checks) == 1:
            return checks[0]
        return lambda record: any(check(record) for check in checks)

    def keep(record: Record) -> bool:
        decoded = _UNDECODED
        for meta, data in compiled:
            if meta is not None and not meta(record):
                continue
            if data is None:
                return True
            if decoded is _UNDECODED:
                decoded = _decode(record[2])
            if decoded is not _NOT_JSON and data(decoded):
                return True
        return False

    return keep


def _keep_all(record: Record) -> bool:
    return True


def _decode(data: bytes) -> Any:
    """The data as a JSON object, or ``_NOT_JSON``."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return _NOT_JSON
    return value if isinstance(value, dict) else _NOT_JSON


def _metadata_check(get: Callable[[Record], Any], field: Matcher) -> RecordPredicate:
    return lambda record: field(get(record))


def _all_of(checks: list[RecordPredicate]) -> RecordPredicate | None:
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return lambda record: all(check(record) for check in checks)


# -- compiling patterns -------------------------------------------------------------


def _compile_field(value: Any, path: str) -> Matcher:
    """A matcher over one field's value (or ``ABSENT``), from its pattern."""
    if isinstance(value, dict):
        return _compile_object(value, path)
    if isinstance(value, list):
        return _compile_leaf(value, path)
    raise PatternError(f"{path} must be a list of values or an object, not {json.dumps(value)}")


def _compile_object(pattern: dict[str, Any], path: str) -> Matcher:
    fields = [(key, _compile_field(value, f"{path}.{key}")) for key, value in pattern.items()]

    def match_object(value: Any) -> bool:
        if isinstance(value, dict):
            return all(field(value.get(key, ABSENT)) for key, field in fields)
        if isinstance(value, list):
            return any(isinstance(v, dict) and match_object(v) for v in value)
        # Not an object (or absent): every field under it is absent.
        return all(field(ABSENT) for _, field in fields)

    return match_object


def _compile_leaf(alternatives: list[Any], path: str) -> Matcher:
    if not alternatives:
        raise PatternError(f"{path} is an empty list: it could match nothing")
    exact: set[Hashable] = set()
    tests: list[Callable[[Any], bool]] = []
    if_absent = if_present = False
    for alternative in alternatives:
        if isinstance(alternative, dict):
            if len(alternative) != 1:
                raise PatternError(f"{path}: an operator object has exactly one key")
            [(name, argument)] = alternative.items()
            if name == "exists":
                if not isinstance(argument, bool):
                    raise PatternError(f"{path}: exists takes true or false")
                if argument:
                    if_present = True
                else:
                    if_absent = True
            else:
                tests.append(_compile_operator(name, argument, path))
        elif isinstance(alternative, list):
            raise PatternError(f"{path}: a list of values cannot hold a list")
        else:
            exact.add(value_key(alternative))

    def match_scalar(value: Any) -> bool:
        if isinstance(value, dict | list):
            return False
        if value_key(value) in exact:
            return True
        return any(test(value) for test in tests)

    def match_leaf(value: Any) -> bool:
        if value is ABSENT:
            return if_absent
        if if_present:
            return True
        if type(value) is list:
            return any(match_scalar(v) for v in value)
        return match_scalar(value)

    return match_leaf


def value_key(value: Any) -> Hashable:
    """The identity under which values compare equal: strings as themselves, numbers by
    their JSON text, and booleans and null apart from both."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is bool or value is None:
        return (value,)
    return ("number", json.dumps(value))


def _compile_operator(name: str, argument: Any, path: str) -> Callable[[Any], bool]:
    if name == "prefix":
        if not isinstance(argument, str):
            raise PatternError(f"{path}: prefix takes a string")
        return lambda value: type(value) is str and value.startswith(argument)
    if name == "anything-but":
        return _compile_anything_but(argument, path)
    if name == "numeric":
        return _compile_numeric(argument, path)
    raise PatternError(f"{path}: unknown operator {name!r} (prefix, anything-but, numeric, exists)")


def _compile_anything_but(argument: Any, path: str) -> Callable[[Any], bool]:
    if isinstance(argument, dict):
        prefix = argument.get("prefix")
        if len(argument) != 1 or not isinstance(prefix, str):
            raise PatternError(f'{path}: anything-but takes values or {{"prefix": string}}')
        return lambda value: not (type(value) is str and value.startswith(prefix))
    values = argument if isinstance(argument, list) else [argument]
    if not values:
        raise PatternError(f"{path}: anything-but needs at least one value")
    for v in values:
        if not (isinstance(v, str) or _is_number(v)):
            raise PatternError(f"{path}: anything-but takes strings and numbers, not {v!r}")
    excluded = {value_key(v) for v in values}
    return lambda value: value_key(value) not in excluded


def _compile_numeric(argument: Any, path: str) -> Callable[[Any], bool]:
    if not isinstance(argument, list) or len(argument) not in (2, 4):
        raise PatternError(f"{path}: numeric takes [op, n] or [op, n, op, n]")
    bounds: list[tuple[Callable[[Any, Any], bool], float]] = []
    for op, bound in zip(argument[::2], argument[1::2], strict=True):
        if op not in _COMPARISONS:
            raise PatternError(f"{path}: numeric operator {op!r} is not one of =, <, <=, >, >=")
        if not _is_number(bound):
            raise PatternError(f"{path}: numeric bound {bound!r} is not a number")
        bounds.append((_COMPARISONS[op], bound))
    if len(argument) == 4:
        ops = {argument[0], argument[2]}
        if len(ops & _LOWER.keys()) != 1 or len(ops & _UPPER.keys()) != 1:
            raise PatternError(f"{path}: a numeric range is one lower and one upper bound")
        low = argument[1] if argument[0] in _LOWER else argument[3]
        high = argument[3] if argument[0] in _LOWER else argument[1]
        if low > high:
            raise PatternError(f"{path}: numeric range {low} .. {high} is empty")

    def in_range(value: Any) -> bool:
        kind = type(value)
        if kind is not int and kind is not float:
            return False
        return all(compare(value, bound) for compare, bound in bounds)

    return in_range


def _is_number(value: Any) -> bool:
    kind = type(value)
    return kind is int or (kind is float and math.isfinite(value))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _invalid(why: str) -> InvalidParameterValueError:
    return InvalidParameterValueError(f"FilterCriteria: {why}")
