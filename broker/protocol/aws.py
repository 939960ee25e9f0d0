"""The AWS wire's bodies: Kinesis' own JSON 1.1 and CBOR 1.1, over the native operation table.

AWS SDKs call an operation as ``POST /`` with ``X-Amz-Target:
Kinesis_20131202.<Operation>`` and a body in one of two encodings:

* ``application/x-amz-json-1.1`` (boto3, the AWS CLI, most SDKs): blobs are
  base64 text, timestamps epoch **seconds** as numbers (fractions allowed);
* ``application/x-amz-cbor-1.1`` (the Java SDKs' default, so the KCL's):
  blobs are byte strings, timestamps epoch **milliseconds** as integers under
  CBOR tag 1, as AWS writes them (RFC 8949 says tag 1 counts seconds; AWS and
  the Java SDK count milliseconds: ``broker.protocol.aws_events`` has the
  sources). Requests may send plain integers too, and a tag-1 value small
  enough to be seconds (RFC 8949's unit) is read as seconds.

The operation table (``broker.operations``) knows only the native shapes:
Kinesis field names, ``Data`` as bytes, times as integer milliseconds. This
module converts between the two at the edge, by field name, so that no
handler exists twice: a request's blob fields are decoded from base64 and its
timestamp fields turned into milliseconds; a response's bytes become base64
and its timestamp fields seconds. The field names are those of the Kinesis
model (botocore's ``kinesis/2013-12-02/service-2.json``): ``Data`` is the only
blob, and the timestamps are the names in ``TIMESTAMPS``. Fields of
shardline's own operations (checkpoints, leases) that hold milliseconds keep
them: they have no AWS shape to follow.

A body that is not one value of its encoding, or whose top level is not a
map, is ``SerializationException``, as AWS answers; a blob that is not base64
is ``SerializationException`` too. Errors go back as ``{"__type": <Name>,
"message": ...}`` in the request's encoding, with the error's status (400,
500 for a failure of the broker).
"""

from __future__ import annotations

import binascii
import datetime
import math
from collections.abc import Callable
from typing import Any

import cbor2
import orjson

from ..errors import SerializationError, ShardlineError

TARGET_PREFIX = "Kinesis_20131202."
JSON_TYPE = "application/x-amz-json-1.1"
CBOR_TYPE = "application/x-amz-cbor-1.1"
#: Content types taken as JSON 1.1 too (curl users, older SDKs).
JSON_ALIASES = frozenset({JSON_TYPE, "application/x-amz-json-1.0", "application/json", ""})

#: Timestamp fields of the Kinesis model, requests and responses.
TIMESTAMPS = frozenset(
    {
        "ApproximateArrivalTimestamp",
        "ConsumerCreationTimestamp",
        "StreamCreationTimestamp",
        "Timestamp",
    }
)
#: Blob fields of the Kinesis model.
BLOBS = frozenset({"Data"})


class Codec:
    """One of the two encodings: how a body is read and written, and how its fields look."""

    def __init__(
        self,
        name: str,
        content_type: str,
        loads: Callable[[bytes], Any],
        dumps: Callable[[Any], bytes],
        *,
        blobs_as_text: bool,
        time_scale: int,
    ) -> None:
        self.name = name
        self.content_type = content_type
        self._loads = loads
        self._dumps = dumps
        #: JSON carries blobs as base64 text; CBOR as byte strings.
        self.blobs_as_text = blobs_as_text
        #: Milliseconds per unit of a timestamp on this wire (1000: seconds; 1: ms).
        self.time_scale = time_scale

    def __repr__(self) -> str:
        return f"Codec({self.name})"

    def decode_request(self, body: bytes) -> dict[str, Any]:
        """A request body as the operation table's request map (native shapes)."""
        if not body.strip():
            return {}
        try:
            value = self._loads(body)
        except (ValueError, cbor2.CBORDecodeError, RecursionError) as exc:
            raise SerializationError(
                f"the request body is not valid {self.name}: {exc or type(exc).__name__}"
            ) from None
        if not isinstance(value, dict):
            raise SerializationError(
                f"the request body must be a {self.name} object, got {type(value).__name__}"
            )
        return self._inbound(value)

    def encode_response(self, value: dict[str, Any]) -> bytes:
        """A response map of the operation table (native shapes) as this wire's body."""
        return self._dumps(self._outbound(value))

    def encode_error(self, error: ShardlineError) -> bytes:
        return self._dumps(error.to_body())

    # -- field conversions --------------------------------------------------

    def _inbound(self, value: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in BLOBS:
                out[key] = self._blob_in(key, item)
            elif key in TIMESTAMPS:
                out[key] = self._time_in(key, item)
            elif isinstance(item, dict):
                out[key] = self._inbound(item)
            elif isinstance(item, list):
                out[key] = [self._inbound(v) if isinstance(v, dict) else v for v in item]
            else:
                out[key] = item
        return out

    def _blob_in(self, key: str, item: Any) -> Any:
        if not self.blobs_as_text or not isinstance(item, str):
            return item  # bytes on CBOR; anything else is the handler's to refuse
        try:
            return binascii.a2b_base64(item, strict_mode=True)
        except (binascii.Error, ValueError):
            raise SerializationError(f"{key} is not valid base64") from None

    def _time_in(self, key: str, item: Any) -> Any:
        if isinstance(item, datetime.datetime):
            if item.tzinfo is None:
                item = item.replace(tzinfo=datetime.UTC)
            return round(item.timestamp() * 1000)
        if isinstance(item, bool) or not isinstance(item, int | float):
            if isinstance(item, str):
                return self._time_text(key, item)
            return item  # the handler refuses it by name
        return _finite_ms(key, item * self.time_scale)

    def _time_text(self, key: str, text: str) -> int:
        """A timestamp sent as text: epoch seconds or ISO 8601 (botocore accepts both)."""
        try:
            seconds = float(text)
        except ValueError:
            pass
        else:
            return _finite_ms(key, seconds * 1000)
        try:
            moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise SerializationError(f"{key} is not a timestamp: {text[:64]!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return round(moment.timestamp() * 1000)

    def _outbound(self, value: dict[str, Any]) -> dict[str, Any]:
        """``value`` with blobs and timestamps in this wire's form; copied only where changed.

        Most of a hot answer's maps (PutRecords' entries) hold only text: they
        are passed through as they are, so converting costs a type test per field.
        """
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            kind = type(item)
            if kind is str or item is None:
                continue
            new: Any
            if kind is int:
                if key not in TIMESTAMPS:
                    continue
                new = self.time_out(item)
            elif kind is dict:
                new = self._outbound(item)
            elif kind is list or kind is tuple:
                new = self._outbound_list(item)
            elif kind is bytes or kind is bytearray or kind is memoryview:
                new = self._blob_out(item)
            else:
                continue
            if new is item:
                continue
            if changed is None:
                changed = dict(value)
            changed[key] = new
        return value if changed is None else changed

    def _outbound_list(self, items: list[Any] | tuple[Any, ...]) -> list[Any] | tuple[Any, ...]:
        changed: list[Any] | None = None
        for at, item in enumerate(items):
            kind = type(item)
            new: Any
            if kind is dict:
                new = self._outbound(item)
            elif kind is bytes or kind is bytearray or kind is memoryview:
                new = self._blob_out(item)
            elif kind is list or kind is tuple:
                new = self._outbound_list(item)
            else:
                continue
            if new is item:
                continue
            if changed is None:
                changed = list(items)
            changed[at] = new
        return items if changed is None else changed

    def _blob_out(self, item: bytes | bytearray | memoryview) -> str | bytes:
        if self.blobs_as_text:
            return binascii.b2a_base64(item, newline=False).decode("ascii")
        return item if type(item) is bytes else bytes(item)

    def time_out(self, ms: int) -> float | cbor2.CBORTag:
        """Milliseconds as this wire's timestamp."""
        return ms / 1000 if self.time_scale == 1000 else cbor2.CBORTag(1, ms)

    def blob_out(self, data: bytes) -> str | bytes:
        return self._blob_out(data)

    def dumps(self, value: Any) -> bytes:
        """A value already in this wire's shapes, encoded (event payloads)."""
        return self._dumps(value)


#: The largest timestamp taken, in milliseconds (about 292 million years): far past any
#: moment a client means, and small enough for every integer type downstream.
_MAX_MS = 2**63 - 1


def _finite_ms(key: str, ms: float) -> int:
    """``ms`` rounded, or ``SerializationError`` if it is not a finite number in range."""
    try:
        if isinstance(ms, float) and not math.isfinite(ms):
            raise OverflowError
        value = round(ms)
    except OverflowError:
        raise SerializationError(f"{key} is not a finite timestamp") from None
    if not -_MAX_MS <= value <= _MAX_MS:
        raise SerializationError(f"{key} is out of range for a timestamp")
    return value


def _json_dumps(value: Any) -> bytes:
    # orjson: about 15 times json.dumps on a PutRecords answer of 500 entries.
    return orjson.dumps(value)


def _cbor_dumps(value: Any) -> bytes:
    return cbor2.dumps(value)


#: A CBOR tag-1 value below this is epoch seconds (RFC 8949), at or above it milliseconds (AWS).
#: 1e11 s is the year 5138; 1e11 ms is 1973: no moment a client means is ambiguous.
_SECONDS_BELOW = 100_000_000_000


def _epoch_tag(value: Any, _immutable: bool) -> Any:
    """A tag-1 timestamp as milliseconds: AWS's unit, or RFC 8949's seconds when it is small."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value * 1000 if abs(value) < _SECONDS_BELOW else value
    return value  # not a number: the handler refuses it by name


def _cbor_loads(body: bytes) -> Any:
    return cbor2.loads(body, semantic_decoders={1: _epoch_tag})


JSON = Codec("JSON", JSON_TYPE, orjson.loads, _json_dumps, blobs_as_text=True, time_scale=1000)
CBOR = Codec("CBOR", CBOR_TYPE, _cbor_loads, _cbor_dumps, blobs_as_text=False, time_scale=1)


def codec_for(content_type: str) -> Codec:
    """The codec of a request's ``content-type`` (parameters ignored); JSON unless CBOR."""
    bare = content_type.split(";", 1)[0].strip().lower()
    return CBOR if bare == CBOR_TYPE else JSON


def operation_of(target: str) -> str:
    """The operation named by an ``X-Amz-Target`` value ('' when it is not Kinesis')."""
    prefix, dot, name = target.strip().rpartition(".")
    if not dot or prefix != TARGET_PREFIX[:-1] or not name.isidentifier():
        return ""
    return name


__all__ = [
    "BLOBS",
    "CBOR",
    "CBOR_TYPE",
    "JSON",
    "JSON_TYPE",
    "TARGET_PREFIX",
    "TIMESTAMPS",
    "Codec",
    "codec_for",
    "operation_of",
]
