"""SubscribeToShard's push events in AWS form: native events in, event-stream messages out.

The fan-out hub writes a subscription's body as native push events
(``broker.fanout.events``: msgpack maps, records as stored). An AWS client
reads the same subscription as ``application/vnd.amazon.eventstream``
(``broker.protocol.eventstream``) messages whose payloads follow the Kinesis
model (botocore's ``kinesis/2013-12-02/service-2.json``, shape
``SubscribeToShardEventStream``). ``EventTranslator.translate`` turns a chunk
of whole native events into the bytes of the matching messages; it holds no
state between chunks, so a chunk may be translated again, or once for many
subscribers, with the same result.

The translation, event by event (every event message carries
``:message-type event``, ``:event-type SubscribeToShardEvent`` and the
codec's ``:content-type``):

* *records* -> ``{"Records": [{"SequenceNumber", "ApproximateArrivalTimestamp",
  "Data", "PartitionKey"}, ...], "ContinuationSequenceNumber",
  "MillisBehindLatest"}``, the sequence numbers rebuilt from the first
  (``RecordsEvent.sequence_numbers``). ``EncryptionType`` is left out: AWS
  sends it only for a stream encrypted with KMS, which shardline streams
  never are. A batch whose payload would pass ``max_event_bytes`` is cut into
  several events, each continuing at its own last record, so that no message
  nears the 24 MiB bound botocore enforces and a client holds at most about
  that much per message; a single record larger than the bound goes alone.
* *heartbeat* -> the same event with ``"Records": []``.
* *end* -> ``"Records": []``, ``"ContinuationSequenceNumber": null``,
  ``"MillisBehindLatest": 0`` and ``"ChildShards"``: what the KCL takes as the
  shard's end (a null continuation with children; children with parents).
  Other events carry no ``ChildShards`` key.
* *error* -> if the name is one the model lists for this stream
  (``MODELED_EXCEPTIONS``), an ``exception`` message (``:exception-type``
  the name, payload ``{"message": ...}``), which botocore raises as that
  named error; otherwise an unmodeled ``error`` message (``:error-code``,
  ``:error-message``), as a modeled exception of an unknown name would reach
  botocore users without its code.

The stream opens with ``initial_response()``: botocore refuses a stream
without it, and the Java SDK passes its payload (an empty map in the
codec's encoding) to its response unmarshaller.

Two payload encodings, chosen by the request's codec (``broker.protocol.aws``):

*JSON* (``application/x-amz-json-1.1``: boto3, the AWS CLI). ``Data`` is
base64 text; ``ApproximateArrivalTimestamp`` is epoch **seconds** as a
number with exactly the stored millisecond precision (``1700000000.123``,
written from the integer, never through a float); event ``:content-type``
``application/json``. Records are written by hand around the base64 text
(about half the cost of ``json.dumps`` of dicts); the partition key is
escaped by ``json``'s own C escaper, so the output parses to what
``json.dumps`` of the same map would give (a property test holds it to that).

*CBOR* (``application/x-amz-cbor-1.1``: the Java SDKs' default, hence the
KCL's). Payloads are ``cbor2`` maps, ``Data`` a byte string, event
``:content-type`` ``application/x-amz-cbor-1.1`` (unconfirmed what AWS
sends; neither the Java SDK nor botocore reads it). Timestamps are epoch
**milliseconds**, an *integer* under CBOR tag 1 (``CBORTag(1, ms)``), which
breaks RFC 8949 (tag 1 means seconds) the way AWS does. Sources:

- aws-sdk-java-v2 ``AwsCborProtocolFactory.getDefaultTimestampFormats``
  maps the payload to ``UNIX_TIMESTAMP_MILLIS`` ("CBOR uses epoch millis for
  timestamps rather than epoch seconds with millisecond decimal precision
  like JSON protocols"), and ``DateUtils.parseUnixTimestampMillisInstant``
  reads it with ``Long.parseLong``: a float (``1.6E12``) fails;
- its ``SdkCborGenerator.writeValue(Instant)`` writes ``writeTag(1)`` then
  ``instant.toEpochMilli()`` (aws/aws-sdk-java-v2#4661 reports the tag/unit
  mismatch; Jackson's CBOR parser reads past the tag);
- localstack/localstack#3134: KCL 2 against LocalStack failed with
  ``NumberFormatException: For input string: "1.603149588042E9"`` on
  ``ApproximateArrivalTimestamp``, where AWS itself sent ``1603152823565``;
  LocalStack's fix (#6791, #11286) writes ``CBORTag(1, int(ms))``.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

import cbor2

from ..errors import InternalFailureError, SerializationError
from ..fanout.events import (
    EndEvent,
    ErrorEvent,
    Event,
    EventDecoder,
    HeartbeatEvent,
    RecordList,
    RecordsEvent,
)
from . import eventstream
from .aws import CBOR_TYPE, JSON_TYPE, Codec

#: The event type of every SubscribeToShard event.
SUBSCRIBE_TO_SHARD_EVENT = "SubscribeToShardEvent"

#: The errors the Kinesis model lists in ``SubscribeToShardEventStream``: sent as
#: ``exception`` messages; any other name goes as an unmodeled ``error`` message.
MODELED_EXCEPTIONS = frozenset(
    {
        "ResourceNotFoundException",
        "ResourceInUseException",
        "KMSDisabledException",
        "KMSInvalidStateException",
        "KMSAccessDeniedException",
        "KMSNotFoundException",
        "KMSOptInRequired",
        "KMSThrottlingException",
        "InternalFailureException",
    }
)

KIB = 1024
MIB = 1024 * KIB
#: The payload size past which a records event is cut into several (see the module doc).
DEFAULT_MAX_EVENT_BYTES = 1 * MIB
#: The longest error message sent in an ``:error-message`` header (it must fit a header value).
MAX_ERROR_MESSAGE_BYTES = 8 * KIB


class _Payloads:
    """The payloads of one encoding (the interface ``EventTranslator`` writes through)."""

    #: The events' ``:content-type``.
    content_type: str
    #: The initial response's payload: an empty map.
    empty_map: bytes

    def records(
        self,
        sequence_numbers: Sequence[str],
        records: Sequence[RecordList],
        continuation: str,
        millis_behind: int,
    ) -> bytes:
        raise NotImplementedError

    def idle(self, continuation: str, millis_behind: int) -> bytes:
        raise NotImplementedError

    def end(self, children: list[dict[str, Any]]) -> bytes:
        raise NotImplementedError

    def exception(self, message: str) -> bytes:
        raise NotImplementedError

    def record_cost(self, data_bytes: int, key_chars: int) -> int:
        """At least the bytes one record takes in a payload (used to cut big batches)."""
        raise NotImplementedError


def _child_shard(child: Mapping[str, Any]) -> dict[str, Any]:
    """A child shard with the model's fields only (the native map may grow)."""
    hash_range = child["HashKeyRange"]
    return {
        "ShardId": child["ShardId"],
        "ParentShards": list(child["ParentShards"]),
        "HashKeyRange": {
            "StartingHashKey": hash_range["StartingHashKey"],
            "EndingHashKey": hash_range["EndingHashKey"],
        },
    }


def _end_map(children: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [],
        "ContinuationSequenceNumber": None,
        "MillisBehindLatest": 0,
        "ChildShards": [_child_shard(c) for c in children],
    }


_JSON_RECORD = (
    b'{"SequenceNumber":"%b","ApproximateArrivalTimestamp":%b,"Data":"%b","PartitionKey":%b}'
)
_JSON_RECORDS = b'{"Records":[%b],"ContinuationSequenceNumber":"%b","MillisBehindLatest":%d}'


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class JsonPayloads(_Payloads):
    """``application/x-amz-json-1.1`` payloads: base64 data, timestamps in seconds."""

    content_type = "application/json"
    empty_map = b"{}"

    def records(
        self,
        sequence_numbers: Sequence[str],
        records: Sequence[RecordList],
        continuation: str,
        millis_behind: int,
    ) -> bytes:
        b64 = binascii.b2a_base64
        # The records of one commit mostly share their arrival time: format it once.
        seconds: dict[int, bytes] = {}
        parts = []
        for sequence, (arrival, key, data) in zip(sequence_numbers, records, strict=True):
            stamp = seconds.get(arrival)
            if stamp is None:
                stamp = seconds[arrival] = b"%d.%03d" % divmod(arrival, 1000)
            parts.append(
                _JSON_RECORD
                % (
                    sequence.encode(),
                    stamp,
                    b64(data, newline=False),
                    encode_basestring_ascii(key).encode(),
                )
            )
        return _JSON_RECORDS % (b",".join(parts), continuation.encode(), millis_behind)

    def idle(self, continuation: str, millis_behind: int) -> bytes:
        return _JSON_RECORDS % (b"", continuation.encode(), millis_behind)

    def end(self, children: list[dict[str, Any]]) -> bytes:
        return _json(_end_map(children))

    def exception(self, message: str) -> bytes:
        return _json({"message": message})

    def record_cost(self, data_bytes: int, key_chars: int) -> int:
        # base64, a key of escapes (12 bytes for a character outside the BMP),
        # a 39-digit sequence number, a timestamp and the field names.
        return 4 * ((data_bytes + 2) // 3) + 12 * key_chars + 160


class CborPayloads(_Payloads):
    """``application/x-amz-cbor-1.1`` payloads: byte strings, tag-1 timestamps in milliseconds."""

    content_type = CBOR_TYPE
    empty_map = cbor2.dumps({})

    def records(
        self,
        sequence_numbers: Sequence[str],
        records: Sequence[RecordList],
        continuation: str,
        millis_behind: int,
    ) -> bytes:
        tag = cbor2.CBORTag
        stamps: dict[int, cbor2.CBORTag] = {}
        items = []
        for sequence, (arrival, key, data) in zip(sequence_numbers, records, strict=True):
            stamp = stamps.get(arrival)
            if stamp is None:
                stamp = stamps[arrival] = tag(1, arrival)
            items.append(
                {
                    "SequenceNumber": sequence,
                    "ApproximateArrivalTimestamp": stamp,
                    "Data": data,
                    "PartitionKey": key,
                }
            )
        return cbor2.dumps(
            {
                "Records": items,
                "ContinuationSequenceNumber": continuation,
                "MillisBehindLatest": millis_behind,
            }
        )

    def idle(self, continuation: str, millis_behind: int) -> bytes:
        return cbor2.dumps(
            {
                "Records": [],
                "ContinuationSequenceNumber": continuation,
                "MillisBehindLatest": millis_behind,
            }
        )

    def end(self, children: list[dict[str, Any]]) -> bytes:
        return cbor2.dumps(_end_map(children))

    def exception(self, message: str) -> bytes:
        return cbor2.dumps({"message": message})

    def record_cost(self, data_bytes: int, key_chars: int) -> int:
        # Data and key (4 bytes a character at most) with their heads, a 39-digit
        # sequence number, a tagged 64-bit timestamp and the field names.
        return data_bytes + 4 * key_chars + 128


_PAYLOADS: dict[str, Callable[[], _Payloads]] = {
    JSON_TYPE: JsonPayloads,
    CBOR_TYPE: CborPayloads,
}


def payloads_for(codec: Codec) -> _Payloads:
    """The payload encoding of a request codec (``broker.protocol.aws.JSON`` or ``CBOR``)."""
    try:
        return _PAYLOADS[codec.content_type]()
    except KeyError:
        raise ValueError(f"no event payload encoding for {codec!r}") from None


def _header_text(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (whole characters)."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[:limit].decode(errors="ignore")


class EventTranslator:
    """Native push events to SubscribeToShard event-stream messages, in one codec (sans-IO).

    ``max_event_bytes`` is the payload size past which a records event is
    cut into several (at least 1 KiB; at most what a message may carry).
    """

    def __init__(self, codec: Codec, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if not KIB <= max_event_bytes <= eventstream.MAX_PAYLOAD_BYTES // 2:
            raise ValueError(
                f"max_event_bytes must be from {KIB} to {eventstream.MAX_PAYLOAD_BYTES // 2}, "
                f"not {max_event_bytes}"
            )
        self.codec = codec
        self.max_event_bytes = max_event_bytes
        self.payloads = payloads_for(codec)
        self._event_headers = eventstream.HeaderBlock(
            {
                ":message-type": "event",
                ":event-type": SUBSCRIBE_TO_SHARD_EVENT,
                ":content-type": self.payloads.content_type,
            }
        )

    def __repr__(self) -> str:
        return f"EventTranslator({self.codec!r}, max_event_bytes={self.max_event_bytes})"

    def initial_response(self) -> bytes:
        """The stream's first message: ``initial-response`` with an empty map."""
        return eventstream.initial_response(self.payloads.empty_map, self.payloads.content_type)

    def translate(self, chunk: bytes | bytearray | memoryview) -> bytes:
        """The messages of a chunk of whole native events, as one run of bytes.

        A chunk that is not whole, well-formed native events is the broker's
        own fault, never the client's: ``InternalFailureError``.
        """
        decoder = EventDecoder()
        try:
            events = decoder.feed(chunk)
            decoder.close()
        except SerializationError as exc:
            raise InternalFailureError(
                f"a push event could not be translated: {exc.message}"
            ) from exc
        if len(events) == 1:
            return b"".join(self.messages(events[0]))
        return b"".join(message for event in events for message in self.messages(event))

    def messages(self, event: Event) -> list[bytes]:
        """The message(s) of one native event (several for a records event over the bound)."""
        payloads, headers = self.payloads, self._event_headers
        if isinstance(event, RecordsEvent):
            return self._records(event)
        if isinstance(event, HeartbeatEvent):
            payload = payloads.idle(str(event.continuation_sequence), event.millis_behind)
            return [eventstream.encode_message(headers, payload)]
        if isinstance(event, EndEvent):
            return [eventstream.encode_message(headers, payloads.end(event.child_shards))]
        if isinstance(event, ErrorEvent):
            return [self._error(event)]
        raise TypeError(f"not a push event: {event!r:.200}")

    def _records(self, event: RecordsEvent) -> list[bytes]:
        sequences = event.sequence_numbers()
        records = event.records
        behind = event.millis_behind
        write, headers = self.payloads.records, self._event_headers
        pieces = self._pieces(records)
        if len(pieces) == 1:
            payload = write(sequences, records, sequences[-1], behind)
            return [eventstream.encode_message(headers, payload)]
        return [
            eventstream.encode_message(
                headers, write(sequences[a:b], records[a:b], sequences[b - 1], behind)
            )
            for a, b in pieces
        ]

    def _pieces(self, records: list[RecordList]) -> list[tuple[int, int]]:
        """Ranges of records whose payload stays under ``max_event_bytes`` (one at least)."""
        cost = self.payloads.record_cost
        budget = self.max_event_bytes
        pieces: list[tuple[int, int]] = []
        start = size = 0
        for i, (_arrival, key, data) in enumerate(records):
            record = cost(len(data), len(key))
            if size + record > budget and i > start:
                pieces.append((start, i))
                start, size = i, 0
            size += record
        pieces.append((start, len(records)))
        return pieces

    def _error(self, event: ErrorEvent) -> bytes:
        code = _header_text(event.error_code, eventstream.MAX_HEADER_VALUE_BYTES)
        if code in MODELED_EXCEPTIONS:
            return eventstream.exception(
                code, self.payloads.exception(event.message), self.payloads.content_type
            )
        message = _header_text(event.message, MAX_ERROR_MESSAGE_BYTES) or code
        return eventstream.error(code, message)


__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "MODELED_EXCEPTIONS",
    "SUBSCRIBE_TO_SHARD_EVENT",
    "CborPayloads",
    "EventTranslator",
    "JsonPayloads",
    "payloads_for",
]
