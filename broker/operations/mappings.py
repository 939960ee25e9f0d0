"""Event source mappings on the wire: Lambda's five operations, parameters and shape.

``CreateEventSourceMapping``, ``UpdateEventSourceMapping``,
``DeleteEventSourceMapping``, ``GetEventSourceMapping`` and
``ListEventSourceMappings`` take Lambda's parameter names, defaults and ranges
(reference §3.1) and answer Lambda's ``EventSourceMappingConfiguration``
(``docs/protocol.md``), plus ``ConsumerARN``: the fan-out consumer the mapping
reads through (``broker.log.mappings`` registers it, or uses the one named).

Which error says what:

- ``ValidationException``: a required parameter is missing or has the wrong
  type (as every other operation, ``fields.py``).
- ``InvalidParameterValueException``: a value out of its range or malformed;
  the message names the parameter and says why.
- ``ResourceNotFoundException``: no mapping has the UUID; the event source's
  stream or consumer does not exist.
- ``ResourceConflictException``: the function already has a mapping on that
  event source.
- ``LimitExceededException``: the stream already has its maximum of consumers.

The broker is synchronous, so a mapping is never ``Creating`` or ``Updating``:
it is ``Enabled`` or ``Disabled`` when the answer arrives, and a delete
answers ``Deleting`` (as Lambda) for a mapping that is already gone. A mapping
whose stream was deleted (``DeleteStream`` with ``EnforceConsumerDeletion``)
or whose consumer was deregistered stays until it is deleted, ``Disabled``
with a ``StateTransitionReason`` that starts with ``PROBLEM:``.

Validation is pure (``create_settings``, ``update_settings``,
``check_function_name``), so it is tested without a broker. Filter patterns are
checked to be JSON objects here; the full pattern grammar is the worker's
filter module's, which the CLI hands in with ``install_filter_validator`` (the
broker never imports ``consumers``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import uuid as uuids
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..config import BrokerConfig
from ..errors import (
    InvalidArgumentError,
    InvalidParameterValueError,
    ResourceNotFoundError,
    ValidationError,
)
from ..log import mappings as store
from ..log.mappings import MappingRecord
from ..model import validate_stream_name
from . import fields as f
from .base import Broker, Request, Response, operation
from .consumers import parse_consumer_arn

STARTING_POSITIONS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
FUNCTION_RESPONSE_TYPES = ("ReportBatchItemFailures",)
MAX_FUNCTION_NAME_CHARS = 2048
MAX_FILTERS = 5
MAX_PATTERN_CHARS = 4096
DEFAULT_MAX_ITEMS = 100
MAX_MAX_ITEMS = 10_000
#: What a mapping made or changed by a request reports as its reason (Lambda's word).
USER_INITIATED = "USER_INITIATED"

#: Integer parameters: (lowest, highest, default). MaximumRecordAgeInSeconds also
#: refuses 0..59 (``RECORD_AGE_GAP``): -1 means unlimited, else at least a minute.
INT_PARAMETERS: dict[str, tuple[int, int, int]] = {
    "BatchSize": (1, 10_000, 100),
    "MaximumBatchingWindowInSeconds": (0, 300, 0),
    "ParallelizationFactor": (1, 10, 1),
    "MaximumRetryAttempts": (-1, 10_000, -1),
    "MaximumRecordAgeInSeconds": (-1, 604_800, -1),
    "TumblingWindowInSeconds": (0, 900, 0),
}
RECORD_AGE_GAP = range(0, 60)
BOOL_PARAMETERS: dict[str, bool] = {"BisectBatchOnFunctionError": False, "Enabled": True}
#: What UpdateEventSourceMapping may change besides FunctionName (as Lambda).
UPDATABLE = (
    *INT_PARAMETERS,
    *BOOL_PARAMETERS,
    "DestinationConfig",
    "FunctionResponseTypes",
    "FilterCriteria",
)
FIXED_AT_CREATION = ("EventSourceArn", "StartingPosition", "StartingPositionTimestamp")

_IDENTIFIERS = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_CALLABLE_RE = re.compile(rf"(python|python\+process|ray):({_IDENTIFIERS}):({_IDENTIFIERS})")

# -- the filter seam ------------------------------------------------------------------

FilterValidator = Callable[[dict[str, Any]], object]
_filter_validator: FilterValidator | None = None


def install_filter_validator(validator: FilterValidator | None) -> None:
    """Have ``FilterCriteria`` checked by ``validator`` too (the worker's pattern compiler).

    It gets the normalised ``{"Filters": [{"Pattern": ...}]}`` and raises
    ``InvalidParameterValueError`` for a pattern it cannot compile; None goes
    back to the JSON check alone.
    """
    global _filter_validator
    _filter_validator = validator


# -- single parameters ----------------------------------------------------------------


def _invalid(name: str, why: str) -> InvalidParameterValueError:
    return InvalidParameterValueError(f"{name}: {why}")


def check_function_name(value: str) -> str:
    """A target's scheme and shape: ``python:``/``python+process:``/``ray:``
    module:function, ``exec:``, a URL."""
    if len(value) > MAX_FUNCTION_NAME_CHARS:
        raise _invalid(
            "FunctionName", f"it must be at most {MAX_FUNCTION_NAME_CHARS} characters long"
        )
    if value.startswith(("python:", "python+process:", "ray:")):
        if _CALLABLE_RE.fullmatch(value) is None:
            scheme = value.split(":", 1)[0]
            raise _invalid(
                "FunctionName",
                f"{value[:200]!r} is not valid: expected {scheme}:package.module:function",
            )
        return value
    if value.startswith("exec:"):
        if not value[5:].strip():
            raise _invalid("FunctionName", "exec: needs a command, e.g. exec:python3 handler.py")
        return value
    if value.startswith(("http://", "https://")):
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not one
            ok = bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok or any(ch.isspace() for ch in value):
            raise _invalid("FunctionName", f"{value[:200]!r} is not a valid http(s) URL")
        return value
    raise _invalid(
        "FunctionName",
        f"{value[:200]!r} is not a target shardline can invoke: expected "
        "python:package.module:function, python+process:package.module:function, "
        "ray:package.module:function, exec:command args, "
        "http://... or https://...",
    )


@dataclass(frozen=True, slots=True)
class EventSource:
    """An ``EventSourceArn`` as stored (an ARN), its stream, and its consumer if one was named."""

    arn: str
    stream: str
    #: (name, creation second) of the consumer a consumer ARN names.
    consumer: tuple[str, int] | None = None


def parse_event_source(config: BrokerConfig, value: str) -> EventSource:
    """A stream ARN, a consumer ARN or a stream name (stored as its ARN); not looked up."""
    try:
        if "/consumer/" in value:
            address = parse_consumer_arn(config, value)
            assert address.created_s is not None
            return EventSource(value, address.stream, (address.name, address.created_s))
        if value.startswith("arn:"):
            stream = f.parse_stream_arn(config, value)
        else:
            stream = validate_stream_name(value)
    except InvalidArgumentError as exc:
        raise _invalid(
            "EventSourceArn",
            f"{value[:200]!r} is neither a stream ARN, a consumer ARN nor a stream name "
            f"({exc.message})",
        ) from None
    return EventSource(config.stream_arn(stream), stream)


def _int(request: Request, name: str) -> int | None:
    value = f.optional_int(request, name)
    if value is None:
        return None
    low, high, _ = INT_PARAMETERS[name]
    if not low <= value <= high:
        raise _invalid(name, f"{value} is out of range: it must be between {low} and {high}")
    if name == "MaximumRecordAgeInSeconds" and value in RECORD_AGE_GAP:
        raise _invalid(name, f"{value} is not valid: it must be -1 (unlimited) or 60 to {high}")
    return value


def _destination(config: BrokerConfig, request: Request) -> dict[str, Any] | None:
    value = f.optional_map(request, "DestinationConfig")
    if value is None:
        return None
    for extra in sorted(set(value) - {"OnFailure"}):
        why = (
            "it is not supported for stream event sources (only OnFailure is)"
            if extra == "OnSuccess"
            else "it is not a destination type (only OnFailure is)"
        )
        raise _invalid(f"DestinationConfig.{extra}", why)
    on_failure = value.get("OnFailure")
    if on_failure is None or on_failure == {}:
        return {"OnFailure": {}}
    if not isinstance(on_failure, dict):
        raise _invalid("DestinationConfig.OnFailure", "it must be a map {Destination: stream}")
    target = on_failure.get("Destination")
    if target is None or target == "":
        return {"OnFailure": {}}
    name = "DestinationConfig.OnFailure.Destination"
    if not isinstance(target, str):
        raise _invalid(name, "it must be a string: a stream ARN or name")
    try:
        if "/consumer/" in target:
            raise InvalidArgumentError("a consumer cannot receive records")
        stream = (
            f.parse_stream_arn(config, target)
            if target.startswith("arn:")
            else validate_stream_name(target)
        )
    except (InvalidArgumentError, ResourceNotFoundError) as exc:
        raise _invalid(
            name, f"{target[:200]!r} is not a stream of this broker ({exc.message})"
        ) from None
    return {"OnFailure": {"Destination": config.stream_arn(stream)}}


def _response_types(request: Request) -> list[str] | None:
    value = request.get("FunctionResponseTypes")
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValidationError(
            "1 validation error detected: Value at 'FunctionResponseTypes' failed to satisfy "
            f"constraint: Member must be a list, got {type(value).__name__}"
        )
    for item in value:
        if item not in FUNCTION_RESPONSE_TYPES:
            raise _invalid(
                "FunctionResponseTypes",
                f"{item!r} is not valid: the only value is ReportBatchItemFailures",
            )
    return sorted(set(value))


def _filter_criteria(request: Request) -> dict[str, Any] | None:
    value = f.optional_map(request, "FilterCriteria")
    if value is None:
        return None
    filters = value.get("Filters")
    if filters is None:
        filters = []
    if not isinstance(filters, list):
        raise _invalid("FilterCriteria.Filters", "it must be a list of {Pattern: JSON string}")
    if len(filters) > MAX_FILTERS:
        raise _invalid(
            "FilterCriteria.Filters", f"at most {MAX_FILTERS} filters, got {len(filters)}"
        )
    patterns: list[dict[str, str]] = []
    for i, entry in enumerate(filters):
        name = f"FilterCriteria.Filters[{i}].Pattern"
        pattern = entry.get("Pattern") if isinstance(entry, dict) else None
        if not isinstance(pattern, str):
            raise _invalid(name, "each filter must be a map with a Pattern string")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise _invalid(
                name, f"it must be at most {MAX_PATTERN_CHARS} characters, got {len(pattern)}"
            )
        try:
            parsed = json.loads(pattern)
        except (ValueError, RecursionError) as exc:
            raise _invalid(name, f"it is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise _invalid(name, f"it must be a JSON object, got {type(parsed).__name__}")
        patterns.append({"Pattern": pattern})
    criteria: dict[str, Any] = {"Filters": patterns}
    if _filter_validator is not None and patterns:
        _filter_validator(criteria)
    return criteria


def _parameters(config: BrokerConfig, request: Request) -> dict[str, Any]:
    """The updatable parameters ``request`` gives, each checked on its own."""
    out: dict[str, Any] = {}
    for name in INT_PARAMETERS:
        number = _int(request, name)
        if number is not None:
            out[name] = number
    for name in BOOL_PARAMETERS:
        if request.get(name) is not None:
            out[name] = f.optional_bool(request, name)
    for name, value in (
        ("DestinationConfig", _destination(config, request)),
        ("FunctionResponseTypes", _response_types(request)),
        ("FilterCriteria", _filter_criteria(request)),
    ):
        if value is not None:
            out[name] = value
    return out


def check_settings(settings: Mapping[str, Any]) -> None:
    """What holds between parameters, checked on the result of a create or an update."""
    window = settings["TumblingWindowInSeconds"]
    factor = settings["ParallelizationFactor"]
    if window and factor != 1:
        raise _invalid(
            "TumblingWindowInSeconds",
            f"a tumbling window ({window} s) requires ParallelizationFactor 1, not {factor}",
        )


DEFAULTS: dict[str, Any] = {
    **{name: default for name, (_, _, default) in INT_PARAMETERS.items()},
    **BOOL_PARAMETERS,
    "DestinationConfig": {"OnFailure": {}},
    "FunctionResponseTypes": [],
    "FilterCriteria": {"Filters": []},
}


def _timestamp(request: Request, now_s: float) -> float:
    value = request.get("StartingPositionTimestamp")
    if value is None:
        raise _invalid("StartingPositionTimestamp", "it is required with AT_TIMESTAMP")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(
            "1 validation error detected: Value at 'StartingPositionTimestamp' failed to "
            f"satisfy constraint: Member must be a number, got {type(value).__name__}"
        )
    if not math.isfinite(value) or value < 0:
        raise _invalid("StartingPositionTimestamp", f"{value} is not a time (epoch seconds)")
    if value > now_s:
        raise _invalid(
            "StartingPositionTimestamp", f"{value} is in the future (it is now {now_s:.3f})"
        )
    return float(value)


def create_settings(config: BrokerConfig, request: Request, now_s: float) -> dict[str, Any]:
    """A new mapping's settings: every parameter of ``request`` checked, defaults for the rest."""
    position = f.required_str(request, "StartingPosition")
    if position not in STARTING_POSITIONS:
        raise _invalid(
            "StartingPosition",
            f"{position!r} is not valid: expected one of {', '.join(STARTING_POSITIONS)}",
        )
    settings: dict[str, Any] = {"StartingPosition": position}
    if position == "AT_TIMESTAMP":
        settings["StartingPositionTimestamp"] = _timestamp(request, now_s)
    elif request.get("StartingPositionTimestamp") is not None:
        raise _invalid("StartingPositionTimestamp", "it is only valid with AT_TIMESTAMP")
    settings.update(DEFAULTS)
    settings.update(_parameters(config, request))
    check_settings(settings)
    return settings


def update_changes(config: BrokerConfig, request: Request) -> dict[str, Any]:
    """The changes an update asks for, each checked on its own (the whole: ``update_settings``)."""
    for name in FIXED_AT_CREATION:
        if request.get(name) is not None:
            raise _invalid(name, "it cannot be changed: create another mapping instead")
    return _parameters(config, request)


def update_settings(before: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    settings = {**before, **changes}
    check_settings(settings)
    return settings


def parse_uuid(value: str, name: str = "UUID") -> str:
    """A mapping UUID in canonical form."""
    try:
        return str(uuids.UUID(value))
    except ValueError:
        raise _invalid(name, f"{value[:200]!r} is not a UUID") from None


# -- shape ----------------------------------------------------------------------------


def _consumer_arn(config: BrokerConfig, record: MappingRecord) -> str:
    return (
        f"{config.stream_arn(record.stream)}/consumer/{record.consumer_name}:"
        f"{record.consumer_created_s}"
    )


def problem(broker: Broker, record: MappingRecord) -> str | None:
    """Why a mapping cannot run whatever its settings say (its stream or consumer is gone)."""
    try:
        live = broker.log.describe(record.stream).incarnation == record.incarnation
    except ResourceNotFoundError:
        live = False
    if not live:
        return f"PROBLEM: Stream {broker.config.stream_arn(record.stream)} was deleted"
    consumer = broker.log.get_consumer(record.stream, record.consumer_name)
    if consumer is None or consumer.created_s != record.consumer_created_s:
        return f"PROBLEM: Consumer {_consumer_arn(broker.config, record)} was deregistered"
    return None


def mapping_view(broker: Broker, record: MappingRecord, *, deleting: bool = False) -> Response:
    """Lambda's ``EventSourceMappingConfiguration``, plus ``ConsumerARN``."""
    s = record.settings
    reason = None if deleting else problem(broker, record)
    if deleting:
        state = "Deleting"
    elif reason is None and s["Enabled"]:
        state = "Enabled"
    else:
        state = "Disabled"
    view: Response = {
        "UUID": record.uuid,
        "FunctionArn": record.function_name,
        "EventSourceArn": record.event_source_arn,
        "StartingPosition": s["StartingPosition"],
    }
    if "StartingPositionTimestamp" in s:
        view["StartingPositionTimestamp"] = s["StartingPositionTimestamp"]
    for name in (*INT_PARAMETERS, "BisectBatchOnFunctionError"):
        view[name] = s[name]
    view["DestinationConfig"] = s["DestinationConfig"]
    view["FunctionResponseTypes"] = list(s["FunctionResponseTypes"])
    view["FilterCriteria"] = s["FilterCriteria"]
    view["State"] = state
    view["StateTransitionReason"] = reason or USER_INITIATED
    view["LastModified"] = record.last_modified_ms / 1000
    view["ConsumerARN"] = _consumer_arn(broker.config, record)
    return view


# -- operations -----------------------------------------------------------------------


def _function_name(request: Request) -> str:
    return check_function_name(f.required_str(request, "FunctionName", min_len=0))


def _check_destination(broker: Broker, settings: Mapping[str, Any]) -> None:
    """The OnFailure stream must exist when the mapping is made or changed."""
    config = settings.get("DestinationConfig")
    target = None if config is None else config["OnFailure"].get("Destination")
    if target is None:
        return
    try:
        broker.log.describe(f.parse_stream_arn(broker.config, target))
    except ResourceNotFoundError:
        raise _invalid(
            "DestinationConfig.OnFailure.Destination", f"stream {target} does not exist"
        ) from None


@operation("CreateEventSourceMapping")
async def create_event_source_mapping(broker: Broker, request: Request) -> Response:
    function_name = _function_name(request)
    arn = f.required_str(request, "EventSourceArn", min_len=0)
    source = parse_event_source(broker.config, arn)
    settings = create_settings(broker.config, request, broker.log.now_ms() / 1000)
    _check_destination(broker, settings)
    record = await store.create_mapping(
        broker.log,
        function_name,
        source.arn,
        source.stream,
        settings,
        consumer=source.consumer,
        max_consumers=broker.config.max_consumers_per_stream,
    )
    return mapping_view(broker, record)


@operation("UpdateEventSourceMapping")
async def update_event_source_mapping(broker: Broker, request: Request) -> Response:
    uuid = parse_uuid(f.required_str(request, "UUID", min_len=0))
    function_name = None
    if request.get("FunctionName") is not None:
        function_name = _function_name(request)
    changes = update_changes(broker.config, request)
    _check_destination(broker, changes)

    def change(before: MappingRecord) -> MappingRecord:
        return dataclasses.replace(
            before,
            function_name=function_name or before.function_name,
            settings=update_settings(before.settings, changes),
        )

    record = await store.update_mapping(broker.log, uuid, change)
    return mapping_view(broker, record)


@operation("DeleteEventSourceMapping")
async def delete_event_source_mapping(broker: Broker, request: Request) -> Response:
    uuid = parse_uuid(f.required_str(request, "UUID", min_len=0))
    record = await store.delete_mapping(broker.log, uuid)
    return mapping_view(broker, record, deleting=True)


@operation("GetEventSourceMapping")
async def get_event_source_mapping(broker: Broker, request: Request) -> Response:
    uuid = parse_uuid(f.required_str(request, "UUID", min_len=0))
    record = store.get_mapping(broker.log, uuid)
    if record is None:
        raise ResourceNotFoundError(f"The event source mapping {uuid} does not exist")
    return mapping_view(broker, record)


@operation("ListEventSourceMappings")
async def list_event_source_mappings(broker: Broker, request: Request) -> Response:
    arn = f.optional_str(request, "EventSourceArn")
    source = None if arn is None else parse_event_source(broker.config, arn).arn
    function_name = f.optional_str(request, "FunctionName")
    marker = f.optional_str(request, "Marker")
    after = None if marker is None else parse_uuid(marker, "Marker")
    limit = f.optional_int(request, "MaxItems")
    if limit is None:
        limit = DEFAULT_MAX_ITEMS
    elif not 1 <= limit <= MAX_MAX_ITEMS:
        raise _invalid("MaxItems", f"{limit} is out of range: it must be between 1 and 10000")

    def wanted(record: MappingRecord) -> bool:
        return (source is None or record.event_source_arn == source) and (
            function_name is None or record.function_name == function_name
        )

    found = store.list_mappings(broker.log, after=after, limit=limit + 1, match=wanted)
    page = found[:limit]
    response: Response = {"EventSourceMappings": [mapping_view(broker, r) for r in page]}
    if len(found) > limit:
        response["NextMarker"] = page[-1].uuid
    return response
