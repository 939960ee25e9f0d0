"""Push events: the body of a SubscribeToShard response.

The body is a stream of self-delimiting msgpack maps, one per event, written
back to back with nothing between them; each map's ``Type`` says what it is.
Sequence numbers are decimal strings (``broker.sequence``), times are integer
milliseconds, and every map has exactly the keys below, in this order (so an
encoding is byte for byte ``msgpack.packb`` of the same dict).

*records*: records of the shard, in order::

    {"Type": "records",
     "FirstSequenceNumber": str,          # the sequence number of record 0
     "Records": [[arrival_ms, partition_key, data], ...],   # uint, str, bin; at least one
     "ContinuationSequenceNumber": str,   # the last record's: FirstSequenceNumber + len - 1
     "MillisBehindLatest": int}           # >= 0; 0 when caught up

  Record ``i`` has sequence number ``FirstSequenceNumber + i``. ``Records`` is
  a stored batch's payload exactly as stored (``broker.log.batch``), spliced
  in without decoding it.

*heartbeat*: sent while there is nothing to send::

    {"Type": "heartbeat",
     "ContinuationSequenceNumber": str,   # the last record sent, or the starting position
     "MillisBehindLatest": int}

*end*: the subscription reached the end of a closed shard; the last event::

    {"Type": "end",
     "ContinuationSequenceNumber": None,  # nil: there is nothing after this shard
     "ChildShards": [{"ShardId": str,
                      "ParentShards": [str, ...],                   # at least one
                      "HashKeyRange": {"StartingHashKey": str,      # decimal
                                       "EndingHashKey": str}}, ...], # at least one child
     "MillisBehindLatest": 0}

*error*: the subscription failed; the last event::

    {"Type": "error",
     "ErrorCode": str,                    # a Kinesis error name, e.g. ResourceInUseException
     "Message": str}

A body that ends without an *end* or *error* event ended normally (its
lifetime ran out, or the broker is shutting down): the client subscribes again
``AFTER_SEQUENCE_NUMBER`` the last continuation it received.

Encoding is on the fan-out's hot path: ``encode_records`` builds the map's
header and keys by hand around the stored payload, so a batch costs a few
small allocations and one copy, whatever its record count. ``EventDecoder`` is
for clients and tests: it is fed the body in chunks of any size, returns typed
events, and refuses anything that does not follow the schema above with a
``SerializationError``. Keys it does not know are ignored, so the schema can
grow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import ormsgpack

from ..errors import SerializationError
from ..sequence import decimal_run

#: The largest event an ``EventDecoder`` accepts by default.
DEFAULT_MAX_EVENT_BYTES = 64 << 20

_MAX_SEQUENCE = (1 << 128) - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,38}")


def _key(name: str) -> bytes:
    return ormsgpack.packb(name)


_RECORDS_HEAD = b"\x85" + _key("Type") + _key("records") + _key("FirstSequenceNumber")
_RECORDS_KEY = _key("Records")
_CONTINUATION_KEY = _key("ContinuationSequenceNumber")
_BEHIND_KEY = _key("MillisBehindLatest")
_HEARTBEAT_HEAD = b"\x83" + _key("Type") + _key("heartbeat") + _CONTINUATION_KEY


def _sequence(value: int) -> bytes:
    """The msgpack str of a sequence number's decimal form (at most 39 digits)."""
    if value < 0 or value > _MAX_SEQUENCE:
        raise ValueError(f"sequence number {value} is not a 128-bit unsigned integer")
    digits = str(value).encode()
    # fixstr up to 31 bytes, str8 beyond: what msgpack itself chooses.
    n = len(digits)
    return bytes((0xA0 | n,)) + digits if n < 32 else b"\xd9" + bytes((n,)) + digits


def _millis(value: int) -> bytes:
    if value < 0:
        raise ValueError(f"MillisBehindLatest must not be negative, got {value}")
    return bytes((value,)) if value < 0x80 else ormsgpack.packb(value)


def array_count(payload: bytes | memoryview) -> int:
    """The item count in the array header that opens ``payload``; ValueError if none does."""
    if not payload:
        raise ValueError("a records payload must be a msgpack array, got no bytes")
    first = payload[0]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F
    if first == 0xDC and len(payload) >= 3:
        return int.from_bytes(payload[1:3], "big")
    if first == 0xDD and len(payload) >= 5:
        return int.from_bytes(payload[1:5], "big")
    raise ValueError(
        f"a records payload must be a msgpack array, not one starting with byte {first:#04x}"
    )


# -- encoding ------------------------------------------------------------------


def encode_records(
    first_sequence: int, payload: bytes | memoryview, last_sequence: int, millis_behind: int
) -> bytes:
    """A *records* event around ``payload``, a stored batch's packed records, unread.

    ``payload`` is a msgpack array of ``[arrival_ms, partition_key, data]``
    arrays (``broker.log.batch.payload_of``, ``StoredBatch.payload``); only its
    array header is looked at, to check that ``last_sequence`` is
    ``first_sequence + count - 1``. The result is the bytes ``msgpack.packb``
    gives for the same map.
    """
    count = array_count(payload)
    if count < 1 or last_sequence != first_sequence + count - 1:
        raise ValueError(
            f"a records event of {count} records from {first_sequence} cannot continue at "
            f"{last_sequence}"
        )
    return b"".join(
        (
            _RECORDS_HEAD,
            _sequence(first_sequence),
            _RECORDS_KEY,
            payload,
            _CONTINUATION_KEY,
            _sequence(last_sequence),
            _BEHIND_KEY,
            _millis(millis_behind),
        )
    )


def encode_heartbeat(continuation_sequence: int | str, millis_behind: int) -> bytes:
    """A *heartbeat* event; the continuation as an integer or as its decimal string."""
    if isinstance(continuation_sequence, str):
        continuation_sequence = _parse_sequence(continuation_sequence, ValueError)
    return b"".join(
        (_HEARTBEAT_HEAD, _sequence(continuation_sequence), _BEHIND_KEY, _millis(millis_behind))
    )


def encode_end(child_shards: Sequence[Mapping[str, Any]]) -> bytes:
    """The *end* event of a closed shard, with its children as ``child_shard_view`` gives them."""
    problem = _child_shards_problem(child_shards)
    if problem:
        raise ValueError(f"an end event needs valid child shards: {problem}")
    return ormsgpack.packb(
        {
            "Type": "end",
            "ContinuationSequenceNumber": None,
            "ChildShards": [dict(c) for c in child_shards],
            "MillisBehindLatest": 0,
        }
    )


def encode_error(error_code: str, message: str) -> bytes:
    """An *error* event: a Kinesis error name (``ShardlineError.wire_name``) and a message."""
    if not isinstance(error_code, str) or not error_code:
        raise ValueError(f"an error event needs an error name, got {error_code!r}")
    if not isinstance(message, str):
        raise ValueError(f"an error event's message must be a str, got {type(message).__name__}")
    return ormsgpack.packb({"Type": "error", "ErrorCode": error_code, "Message": message})


# -- events --------------------------------------------------------------------

#: One record as decoded: ``[arrival_ms, partition_key, data]``.
RecordList = list[Any]


@dataclass(frozen=True, slots=True)
class RecordsEvent:
    """Records of the shard; record ``i`` has sequence number ``first_sequence + i``."""

    first_sequence: int
    records: list[RecordList]
    continuation_sequence: int
    millis_behind: int

    def sequence_number(self, i: int) -> int:
        """The sequence number of record ``i`` (negative ``i`` counts from the end)."""
        if i < 0:
            i += len(self.records)
        if not 0 <= i < len(self.records):
            raise IndexError(f"record {i} of {len(self.records)}")
        return self.first_sequence + i

    def sequence_numbers(self) -> list[str]:
        """Every record's sequence number, as the decimal strings of the wire."""
        return decimal_run(self.first_sequence, len(self.records))


@dataclass(frozen=True, slots=True)
class HeartbeatEvent:
    """Nothing new; ``continuation_sequence`` is where to resume (AFTER it)."""

    continuation_sequence: int
    millis_behind: int


@dataclass(frozen=True, slots=True)
class EndEvent:
    """The end of a closed shard: read ``child_shards`` next. The last event of the body."""

    child_shards: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """The subscription failed with the Kinesis error ``error_code``. The last event of the body."""

    error_code: str
    message: str


Event = RecordsEvent | HeartbeatEvent | EndEvent | ErrorEvent


# -- decoding ------------------------------------------------------------------


class EventDecoder:
    """Push events from a body fed in chunks of any size (sans-IO).

    ``feed`` returns the events that the bytes so far complete; ``close`` says
    the body ended, and refuses a body cut inside an event. An event larger
    than ``max_event_bytes``, bytes that are not msgpack, a map that does not
    follow the schema, or anything after an *end* or *error* event is a
    ``SerializationError``; the decoder is unusable after one.
    """

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if max_event_bytes < 1:
            raise ValueError("max_event_bytes must be positive")
        self.max_event_bytes = max_event_bytes
        # Room for one partial event plus one fed slice (``feed`` slices its input).
        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=2 * max_event_bytes)
        self._fed = 0
        #: Where the last complete event ended, in bytes fed.
        self._event_end = 0
        self._failed = False
        #: True once an *end* or *error* event was decoded: nothing may follow.
        self.finished = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        if self._failed:
            raise SerializationError("the event stream already failed to decode")
        events: list[Event] = []
        view = memoryview(data)
        step = self.max_event_bytes
        try:
            for start in range(0, len(view), step):
                piece = view[start : start + step]
                if self.finished:
                    raise SerializationError(
                        f"{len(view) - start} bytes follow the stream's final event"
                    )
                self._unpacker.feed(piece)
                self._fed += len(piece)
                for value in self._unpacker:
                    if self.finished:
                        raise SerializationError("an event follows the stream's final event")
                    self._event_end = self._unpacker.tell()
                    event = _event(value)
                    self.finished = isinstance(event, EndEvent | ErrorEvent)
                    events.append(event)
                if self.pending_bytes >= self.max_event_bytes:
                    raise SerializationError(
                        f"an event is larger than the decoder's bound of {self.max_event_bytes} "
                        "bytes"
                    )
        except SerializationError:
            self._failed = True
            raise
        except (ValueError, msgpack.UnpackException) as exc:
            # msgpack's FormatError, StackError, ExtraData and BufferFull are ValueErrors.
            self._failed = True
            raise SerializationError(
                f"the event stream is not valid msgpack: {exc or type(exc).__name__}"
            ) from exc
        return events

    @property
    def pending_bytes(self) -> int:
        """Bytes fed that do not yet complete an event."""
        return self._fed - self._event_end

    def close(self) -> None:
        """The body ended; ``SerializationError`` if it ended inside an event."""
        if self.pending_bytes and not self._failed:
            self._failed = True
            raise SerializationError(
                f"the event stream ended inside an event ({self.pending_bytes} bytes of it)"
            )


def _parse_sequence(value: object, error: type[Exception] = SerializationError) -> int:
    if not isinstance(value, str) or _DECIMAL.fullmatch(value) is None:
        raise error(f"a sequence number must be a decimal string, got {value!r}")
    number = int(value)
    if number > _MAX_SEQUENCE:
        raise error(f"sequence number {value} exceeds 128 bits")
    return number


def _millis_of(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise SerializationError(f"MillisBehindLatest must be a non-negative int, got {value!r}")
    return value


def _field(event: Mapping[str, Any], name: str) -> Any:
    try:
        return event[name]
    except KeyError:
        raise SerializationError(f"a {event.get('Type')!r} event lacks its {name} field") from None


def _records(value: Any) -> list[RecordList]:
    if type(value) is not list or not value:
        raise SerializationError("a records event needs a non-empty Records array")
    # Unpacking each record checks its length (and, as everything msgpack decodes
    # that unpacks into three is a list, a str, a bin or a map, the types below
    # refuse the rest): about 80 ns a record, against 130 for indexing.
    try:
        for arrival, key, data in value:
            if type(arrival) is not int or type(key) is not str or type(data) is not bytes:
                break
            if arrival < 0:
                break
        else:
            return value
    except (TypeError, ValueError):
        pass
    bad = next(r for r in value if not _is_record(r))
    raise SerializationError(
        f"a record must be [arrival_ms, partition_key, data], got {bad!r:.200}"
    )


def _is_record(record: Any) -> bool:
    return (
        type(record) is list
        and len(record) == 3
        and type(record[0]) is int
        and record[0] >= 0
        and type(record[1]) is str
        and type(record[2]) is bytes
    )


def _is_decimal(value: Any) -> bool:
    return isinstance(value, str) and _DECIMAL.fullmatch(value) is not None


def _child_shards_problem(value: Any) -> str | None:
    """What is wrong with a ChildShards value, or None."""
    if not isinstance(value, Sequence) or isinstance(value, str | bytes) or not value:
        return "ChildShards must be a non-empty array"
    for child in value:
        if not isinstance(child, Mapping):
            return f"a child shard must be a map, got {child!r:.200}"
        parents = child.get("ParentShards")
        hash_range = child.get("HashKeyRange")
        if (
            not isinstance(child.get("ShardId"), str)
            or not isinstance(parents, Sequence)
            or isinstance(parents, str | bytes)
            or not parents
            or not all(isinstance(p, str) for p in parents)
            or not isinstance(hash_range, Mapping)
            or not _is_decimal(hash_range.get("StartingHashKey"))
            or not _is_decimal(hash_range.get("EndingHashKey"))
        ):
            return (
                "a child shard must be {ShardId, ParentShards (non-empty), "
                f"HashKeyRange{{StartingHashKey, EndingHashKey}}}}, got {child!r:.200}"
            )
    return None


def _event(value: Any) -> Event:
    """The typed event of one decoded map; ``SerializationError`` if it breaks the schema."""
    if type(value) is not dict:
        raise SerializationError(f"an event must be a msgpack map, got {type(value).__name__}")
    kind = value.get("Type")
    if kind == "records":
        first = _parse_sequence(_field(value, "FirstSequenceNumber"))
        records = _records(_field(value, "Records"))
        continuation = _parse_sequence(_field(value, "ContinuationSequenceNumber"))
        if continuation != first + len(records) - 1:
            raise SerializationError(
                f"a records event of {len(records)} records from {first} continues at "
                f"{continuation}, not at its last record"
            )
        return RecordsEvent(
            first, records, continuation, _millis_of(_field(value, "MillisBehindLatest"))
        )
    if kind == "heartbeat":
        return HeartbeatEvent(
            _parse_sequence(_field(value, "ContinuationSequenceNumber")),
            _millis_of(_field(value, "MillisBehindLatest")),
        )
    if kind == "end":
        if _field(value, "ContinuationSequenceNumber") is not None:
            raise SerializationError("an end event's ContinuationSequenceNumber must be nil")
        if _field(value, "MillisBehindLatest") != 0:
            raise SerializationError("an end event's MillisBehindLatest must be 0")
        children = _field(value, "ChildShards")
        problem = _child_shards_problem(children)
        if problem:
            raise SerializationError(problem)
        return EndEvent(children)
    if kind == "error":
        code = _field(value, "ErrorCode")
        message = _field(value, "Message")
        if not isinstance(code, str) or not code or not isinstance(message, str):
            raise SerializationError("an error event needs a non-empty ErrorCode and a Message")
        return ErrorEvent(code, message)
    raise SerializationError(f"unknown event Type {kind!r:.100}")
