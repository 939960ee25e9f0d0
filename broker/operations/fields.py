"""Request fields: typed reads of a decoded request, and how a stream is addressed.

A request is a dict with Kinesis field names, decoded from msgpack (or, later,
JSON/CBOR). Nothing about its contents can be trusted: every handler reads its
fields through these helpers, which either return a value of the promised
type or raise a ``ShardlineError`` naming the field and what is wrong.

Which error says what:

- ``ValidationException``: a required field is missing, or a field has the
  wrong type (a string where a number belongs, a list where a map belongs).
- ``InvalidArgumentException``: a field has the right type but a value the
  operation does not accept (out of range, too long, malformed).

Unknown fields are ignored, as AWS does. ``bool`` is never accepted as an
integer, although Python says it is one.

Streams are named by ``StreamName`` or by ``StreamARN``
(``arn:aws:kinesis:<region>:<account>:stream/<name>``) wherever Kinesis accepts
either; an ARN of another region or account names a stream this broker does
not have (``ResourceNotFoundException``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..config import BrokerConfig
from ..errors import InvalidArgumentError, ResourceNotFoundError, ValidationError
from ..model import STREAM_NAME_RE, parse_shard_id, validate_stream_name

Request = Mapping[str, Any]

_ARN_RE = re.compile(r"arn:aws:kinesis:([a-z0-9-]{1,64}):([0-9]{12}):stream/(.*)")
MAX_ARN_CHARS = 2048

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    bytes: "binary data",
    list: "a list",
    dict: "a map",
    bool: "a boolean",
}


def _missing(name: str) -> ValidationError:
    return ValidationError(
        f"1 validation error detected: Value null at '{name}' failed to satisfy constraint: "
        "Member must not be null"
    )


def _wrong_type(name: str, expected: type, value: object) -> ValidationError:
    return ValidationError(
        f"1 validation error detected: Value at '{name}' failed to satisfy constraint: "
        f"Member must be {_TYPE_NAMES[expected]}, got {type(value).__name__}"
    )


def _get(
    request: Request, name: str, expected: type, required: bool, label: str | None = None
) -> Any:
    value = request.get(name)
    name = label or name
    if value is None:
        if required:
            raise _missing(name)
        return None
    if expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is bytes:
        ok = isinstance(value, bytes | bytearray | memoryview)
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise _wrong_type(name, expected, value)
    return value


# -- strings ------------------------------------------------------------------


def _check_str(name: str, value: str, min_len: int, max_len: int | None) -> str:
    if len(value) < min_len:
        raise InvalidArgumentError(
            f"{name} must be at least {min_len} character(s) long, got {len(value)}"
        )
    if max_len is not None and len(value) > max_len:
        raise InvalidArgumentError(
            f"{name} must be at most {max_len} characters long, got {len(value)}"
        )
    return value


def required_str(
    request: Request,
    name: str,
    *,
    min_len: int = 1,
    max_len: int | None = None,
    label: str | None = None,
) -> str:
    """A string field; ``label`` names it in messages (``Records[3].PartitionKey``)."""
    value: str = _get(request, name, str, True, label)
    return _check_str(label or name, value, min_len, max_len)


def optional_str(
    request: Request, name: str, *, min_len: int = 1, max_len: int | None = None
) -> str | None:
    value: str | None = _get(request, name, str, False)
    return None if value is None else _check_str(name, value, min_len, max_len)


def required_choice(request: Request, name: str, choices: tuple[str, ...]) -> str:
    value = required_str(request, name)
    return _check_choice(name, value, choices)


def optional_choice(request: Request, name: str, choices: tuple[str, ...]) -> str | None:
    value = optional_str(request, name)
    return None if value is None else _check_choice(name, value, choices)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidArgumentError(
            f"{name} {value!r} is not valid: expected one of {', '.join(choices)}"
        )
    return value


# -- numbers, booleans, bytes, containers --------------------------------------


def _check_int(name: str, value: int, low: int | None, high: int | None) -> int:
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidArgumentError(f"{name} {value} is out of range: it must be {bounds}")
    return value


def required_int(
    request: Request, name: str, *, low: int | None = None, high: int | None = None
) -> int:
    value: int = _get(request, name, int, True)
    return _check_int(name, value, low, high)


def optional_int(
    request: Request,
    name: str,
    *,
    default: int | None = None,
    low: int | None = None,
    high: int | None = None,
) -> int | None:
    value: int | None = _get(request, name, int, False)
    return default if value is None else _check_int(name, value, low, high)


def optional_bool(request: Request, name: str, *, default: bool = False) -> bool:
    value: bool | None = _get(request, name, bool, False)
    return default if value is None else value


def required_bytes(request: Request, name: str, *, label: str | None = None) -> bytes:
    value: bytes | bytearray | memoryview = _get(request, name, bytes, True, label)
    return value if isinstance(value, bytes) else bytes(value)


def required_list(
    request: Request, name: str, *, min_len: int = 0, max_len: int | None = None
) -> list[Any]:
    value: list[Any] = _get(request, name, list, True)
    if len(value) < min_len or (max_len is not None and len(value) > max_len):
        bounds = f"between {min_len} and {max_len}" if max_len is not None else f"{min_len}+"
        raise InvalidArgumentError(f"{name} must have {bounds} entries, got {len(value)}")
    return value


def optional_map(request: Request, name: str) -> dict[str, Any] | None:
    value: dict[str, Any] | None = _get(request, name, dict, False)
    if value is not None and not all(isinstance(k, str) for k in value):
        raise ValidationError(f"1 validation error detected: the keys of '{name}' must be strings")
    return value


def entry_map(value: object, where: str) -> dict[str, Any]:
    """A list entry that must be a map with string keys (``Records[3]``)."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValidationError(
            f"1 validation error detected: Value at '{where}' failed to satisfy constraint: "
            f"Member must be a map, got {type(value).__name__}"
        )
    return value


def required_shard(request: Request, name: str) -> int:
    """A shard id field (``shardId-000000000003``) as its index."""
    return parse_shard_id(required_str(request, name))


def optional_shard(request: Request, name: str) -> int | None:
    value = optional_str(request, name)
    if value is None:
        return None
    try:
        return parse_shard_id(value)
    except InvalidArgumentError:
        raise InvalidArgumentError(
            f"{name} {value!r} is not valid: expected 'shardId-' followed by 12 digits"
        ) from None


# -- stream addressing ----------------------------------------------------------


def parse_stream_arn(config: BrokerConfig, arn: str) -> str:
    """The stream name an ARN names on this broker."""
    match = _ARN_RE.fullmatch(arn) if len(arn) <= MAX_ARN_CHARS else None
    if match is None or STREAM_NAME_RE.fullmatch(match.group(3)) is None:
        raise InvalidArgumentError(
            f"StreamARN {arn[:200]!r} is not valid: expected "
            "arn:aws:kinesis:<region>:<account>:stream/<name>"
        )
    region, account, name = match.groups()
    if region != config.region or account != config.account:
        raise ResourceNotFoundError(
            f"Stream {name} under account {account} in region {region} not found "
            f"(this broker serves account {config.account} in region {config.region})"
        )
    return name


def stream_name(config: BrokerConfig, request: Request, *, required: bool = True) -> str | None:
    """The stream named by ``StreamName`` or ``StreamARN`` (both: they must agree)."""
    name = optional_str(request, "StreamName", max_len=128)
    arn = optional_str(request, "StreamARN", max_len=MAX_ARN_CHARS)
    if name is not None:
        validate_stream_name(name)
    if arn is not None:
        from_arn = parse_stream_arn(config, arn)
        if name is not None and name != from_arn:
            raise InvalidArgumentError(
                f"StreamName {name} and StreamARN {arn} name different streams"
            )
        name = from_arn
    if name is None and required:
        raise ValidationError(
            "1 validation error detected: either StreamName or StreamARN must be given"
        )
    return name


def required_stream(config: BrokerConfig, request: Request) -> str:
    name = stream_name(config, request, required=True)
    assert name is not None
    return name
