"""AWS event-stream framing: known bytes, round trips in any split, corruption, botocore."""

from __future__ import annotations

import itertools
import struct
import uuid
import zlib
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import SerializationError
from broker.protocol import eventstream as es
from broker.protocol.eventstream import (
    EventStreamDecoder,
    Header,
    HeaderBlock,
    HeaderType,
    HeaderValue,
    Message,
    encode_message,
)


def _frame(raw_headers: bytes, payload: bytes = b"") -> bytes:
    """A message around hand-made header bytes, with correct CRCs (for malformed headers)."""
    prelude = struct.pack(">II", 16 + len(raw_headers) + len(payload), len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def _decode_all(data: bytes) -> list[Message]:
    decoder = EventStreamDecoder()
    messages = decoder.feed(data)
    decoder.close()
    return messages


# -- known bytes ---------------------------------------------------------------
# Vectors from botocore's tests/unit/test_eventstream.py (the AWS SDKs' shared
# event-stream test cases): the encoder must write exactly these bytes.

KNOWN: list[tuple[bytes, dict[str, Header], bytes]] = [
    (b"\x00\x00\x00\x10\x00\x00\x00\x00\x05\xc2H\xeb}\x98\xc8\xff", {}, b""),
    (
        b"\x00\x00\x00\x17\x00\x00\x00\x07)\x86\x01X\x04byte\x02\xff\xc2\xf8i\xdc",
        {"byte": HeaderValue.byte(-1)},
        b"",
    ),
    (
        b"\x00\x00\x00\x1e\x00\x00\x00\x0e]J\xdb\x8d\x04long\x05"
        b"\xff\xff\xff\xff\xff\xff\xff\xffK\xc22\xda",
        {"long": HeaderValue.long(-1)},
        b"",
    ),
    (
        b"\x00\x00\x00\x1d\x00\x00\x00\x00\xfdR\x8cZ{'foo':'bar'}\xc3e96",
        {},
        b"{'foo':'bar'}",
    ),
    (
        b"\x00\x00\x00=\x00\x00\x00 \x07\xfd\x83\x96\x0ccontent-type\x07\x00\x10"
        b"application/json{'foo':'bar'}\x8d\x9c\x08\xb1",
        {"content-type": "application/json"},
        b"{'foo':'bar'}",
    ),
    (
        b"\x00\x00\x00\x62\x00\x00\x00\x52\x03\xb5\xcb\x9c"
        b"\x010\x00\x011\x01\x012\x02\x02\x013\x03\x00\x03"
        b"\x014\x04\x00\x00\x00\x04\x015\x05\x00\x00\x00\x00\x00\x00\x00\x05"
        b"\x016\x06\x00\x05bytes\x017\x07\x00\x04utf8"
        b"\x018\x08\x00\x00\x00\x00\x00\x00\x00\x08\x019\x090123456789abcdef"
        b"\x63\x35\x36\x71",
        {
            "0": HeaderValue.boolean(True),
            "1": HeaderValue.boolean(False),
            "2": HeaderValue.byte(2),
            "3": HeaderValue.short(3),
            "4": HeaderValue.integer(4),
            "5": HeaderValue.long(5),
            "6": HeaderValue.byte_array(b"bytes"),
            "7": "utf8",
            "8": HeaderValue.timestamp(8),
            "9": HeaderValue.uuid(b"0123456789abcdef"),
        },
        b"",
    ),
    (
        b"\x00\x00\x00\x52\x00\x00\x00\x42\xbf\x23\x63\x7e"
        b"\x0d:message-type\x07\x00\x05error"
        b"\x0b:error-code\x07\x00\x04code"
        b"\x0e:error-message\x07\x00\x07message"
        b"\x6b\x6c\xea\x3d",
        {":message-type": "error", ":error-code": "code", ":error-message": "message"},
        b"",
    ),
]


@pytest.mark.parametrize(("wire", "headers", "payload"), KNOWN)
def test_known_messages_are_written_byte_for_byte_and_read_back(
    wire: bytes, headers: dict[str, Header], payload: bytes
) -> None:
    assert encode_message(headers, payload) == wire
    assert encode_message(HeaderBlock(headers), payload) == wire
    assert _decode_all(wire) == [Message(headers, payload)]


def test_all_known_messages_in_one_stream() -> None:
    stream = b"".join(wire for wire, _, _ in KNOWN)
    assert _decode_all(stream) == [Message(h, p) for _, h, p in KNOWN]


# botocore's corrupted cases, each refused by name.
CORRUPT = [
    # a header length over 128 KiB (and a prelude CRC that no longer matches)
    b"\x00\x00\x00=\xff\x00\x01\x02\x07\xfd\x83\x96\x0ccontent-type\x07\x00"
    b"\x10application/json{'foo':'bar'}\x8d\x9c\x08\xb1",
    # a header name changed: the message CRC
    b"\x00\x00\x00=\x00\x00\x00 \x07\xfd\x83\x96\x0ccontent+type\x07\x00\x10"
    b"application/json{'foo':'bar'}\x8d\x9c\x08\xb1",
    # a total length of 16 MiB: the prelude CRC
    b"\x01\x00\x00\x1d\x00\x00\x00\x00\xfdR\x8cZ{'foo':'bar'}\xc3e96",
    # a payload byte changed: the message CRC
    b"\x00\x00\x00\x1d\x00\x00\x00\x00\xfdR\x8cZ{'foo':'bar'\x8d\xc3e96",
    # a header twice
    b"\x00\x00\x00\x24\x00\x00\x00\x14\x4b\xb9\x82\xd0"
    b"\x04test\x04asdf\x04test\x04asdf\xf3\xf4\x75\x63",
]


@pytest.mark.parametrize("wire", CORRUPT)
def test_known_corruptions_are_refused(wire: bytes) -> None:
    with pytest.raises(SerializationError):
        _decode_all(wire)


# -- strategies ----------------------------------------------------------------

names = st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 255)
texts = st.text(min_size=1, max_size=60)


def _int(kind: HeaderType, bits: int) -> st.SearchStrategy[HeaderValue]:
    bound = 1 << (bits - 1)
    return st.integers(-bound, bound - 1).map(lambda v: HeaderValue(kind, v))


header_values: st.SearchStrategy[Header] = st.one_of(
    texts,
    st.booleans().map(HeaderValue.boolean),
    _int(HeaderType.BYTE, 8),
    _int(HeaderType.SHORT, 16),
    _int(HeaderType.INTEGER, 32),
    _int(HeaderType.LONG, 64),
    _int(HeaderType.TIMESTAMP, 64),
    st.binary(min_size=1, max_size=60).map(HeaderValue.byte_array),
    st.uuids().map(HeaderValue.uuid),
)
header_maps = st.dictionaries(names, header_values, max_size=6)
messages = st.builds(Message, header_maps, st.binary(max_size=2000))


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# -- round trips ---------------------------------------------------------------


@given(st.lists(messages, min_size=1, max_size=4), st.lists(st.integers(0, 10_000)))
def test_messages_round_trip_in_any_split(sent: list[Message], cuts: list[int]) -> None:
    stream = b"".join(m.encode() for m in sent)
    decoder = EventStreamDecoder()
    received: list[Message] = []
    for piece in _splits(stream, cuts):
        received += decoder.feed(piece)
    decoder.close()
    assert received == sent
    assert decoder.pending_bytes == 0


@given(messages, st.data())
def test_a_flipped_byte_anywhere_is_refused(message: Message, data: st.DataObject) -> None:
    wire = bytearray(message.encode())
    at = data.draw(st.integers(0, len(wire) - 1), label="at")
    wire[at] ^= data.draw(st.integers(1, 255), label="xor")
    decoder = EventStreamDecoder()
    # Refused at once, not waited on: the prelude's CRC is checked before its lengths
    # are trusted.
    with pytest.raises(SerializationError):
        decoder.feed(bytes(wire))
    with pytest.raises(SerializationError):
        decoder.feed(message.encode())  # a failed decoder stays failed


@given(st.lists(messages, min_size=1, max_size=3))
def test_botocore_reads_what_we_write(sent: list[Message]) -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(b"".join(m.encode() for m in sent))
    read = list(buffer)
    assert len(read) == len(sent)
    for ours, theirs in zip(sent, read, strict=True):
        expected: dict[str, Any] = {
            name: value if isinstance(value, str) else value.value
            for name, value in ours.headers.items()
        }
        assert theirs.headers == expected
        assert theirs.payload == ours.payload


def test_a_string_header_may_be_given_typed() -> None:
    assert encode_message({"a": HeaderValue.string("x")}, b"") == encode_message({"a": "x"}, b"")
    assert _decode_all(encode_message({"a": HeaderValue.string("x")}, b""))[0].text("a") == "x"


def test_uuid_header_takes_a_uuid() -> None:
    u = uuid.uuid4()
    assert HeaderValue.uuid(u).value == u.bytes


# -- the helpers AWS streams use -----------------------------------------------


def test_event_exception_error_and_initial_response_headers() -> None:
    (ev,) = _decode_all(es.event("SubscribeToShardEvent", b'{"a":1}', "application/json"))
    assert ev.headers == {
        ":message-type": "event",
        ":event-type": "SubscribeToShardEvent",
        ":content-type": "application/json",
    }
    assert ev.payload == b'{"a":1}'
    (exc,) = _decode_all(es.exception("ResourceInUseException", b'{"message":"m"}', "x/y"))
    assert exc.headers == {
        ":message-type": "exception",
        ":exception-type": "ResourceInUseException",
        ":content-type": "x/y",
    }
    (err,) = _decode_all(es.error("Oops", "it broke"))
    assert err.headers == {
        ":message-type": "error",
        ":error-code": "Oops",
        ":error-message": "it broke",
    }
    assert err.payload == b""
    (first,) = _decode_all(es.initial_response())
    assert first.text(":event-type") == "initial-response"
    assert first.payload == b"{}"


# -- bounds and malformed input ------------------------------------------------


def _prelude(total: int, headers_length: int) -> bytes:
    head = struct.pack(">II", total, headers_length)
    return head + struct.pack(">I", zlib.crc32(head))


def test_oversized_headers_are_refused_from_the_prelude_alone() -> None:
    headers_length = es.MAX_HEADERS_BYTES + 1
    with pytest.raises(SerializationError, match="headers"):
        EventStreamDecoder().feed(_prelude(16 + headers_length, headers_length))


def test_an_oversized_payload_is_refused_from_the_prelude_alone() -> None:
    with pytest.raises(SerializationError, match="payload"):
        EventStreamDecoder().feed(_prelude(16 + es.MAX_PAYLOAD_BYTES + 1, 0))


def test_a_total_too_small_for_its_headers_is_refused() -> None:
    with pytest.raises(SerializationError):
        EventStreamDecoder().feed(_prelude(20, 8))


def test_the_decoder_bounds_can_be_tightened() -> None:
    wire = encode_message({"a": "b"}, b"x" * 100)
    with pytest.raises(SerializationError):
        EventStreamDecoder(max_payload_bytes=99).feed(wire)
    assert EventStreamDecoder(max_payload_bytes=100).feed(wire)[0].payload == b"x" * 100


def test_the_encoder_refuses_what_botocore_would_refuse() -> None:
    with pytest.raises(ValueError, match="payload"):
        encode_message({}, bytes(es.MAX_PAYLOAD_BYTES + 1))
    big = "x" * es.MAX_HEADER_VALUE_BYTES
    with pytest.raises(ValueError, match="headers"):
        HeaderBlock({str(i): big for i in range(5)})


@pytest.mark.parametrize(
    "headers",
    [
        {"": "x"},
        {"n" * 256: "x"},
        {"a": ""},
        {"a": "x" * (es.MAX_HEADER_VALUE_BYTES + 1)},
        {"a": HeaderValue(HeaderType.BYTE_ARRAY, b"")},
        {"a": 5},
    ],
)
def test_the_encoder_refuses_headers_the_specification_forbids(headers: Any) -> None:
    with pytest.raises(ValueError):
        encode_message(headers, b"")


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (HeaderType.BYTE, 128),
        (HeaderType.SHORT, -(1 << 15) - 1),
        (HeaderType.INTEGER, 1 << 31),
        (HeaderType.LONG, 1 << 63),
        (HeaderType.TIMESTAMP, 1.5),
        (HeaderType.TRUE, False),
        (HeaderType.FALSE, 0),
        (HeaderType.UUID, b"short"),
        (HeaderType.STRING, b"bytes"),
        (HeaderType.BYTE_ARRAY, "text"),
    ],
)
def test_header_values_check_their_type_and_range(kind: HeaderType, value: Any) -> None:
    with pytest.raises(ValueError):
        HeaderValue(kind, value)


@pytest.mark.parametrize(
    "raw_headers",
    [
        b"\x00\x07\x00\x01x",  # an empty name
        b"\x01a\x0a",  # type 10 does not exist
        b"\x01a\x04\x00\x00",  # an int32 cut short
        b"\x01a\x07\x00\x05abc",  # a string cut short
        b"\x05ab",  # a name cut short
        b"\x01a",  # no type
        b"\x01\xff\x07\x00\x01x",  # a name that is not UTF-8
        b"\x01a\x07\x00\x01\xff",  # a string that is not UTF-8
        b"\x01a\x09" + b"\x00" * 15,  # a uuid cut short
    ],
)
def test_malformed_headers_are_refused(raw_headers: bytes) -> None:
    with pytest.raises(SerializationError):
        _decode_all(_frame(raw_headers))


def test_headers_botocore_accepts_are_read_even_where_we_would_not_write_them() -> None:
    # Empty string and byte-array values: botocore reads them, the specification
    # forbids writing them.
    (message,) = _decode_all(_frame(b"\x01a\x07\x00\x00\x01b\x06\x00\x00"))
    assert message.headers == {"a": "", "b": HeaderValue(HeaderType.BYTE_ARRAY, b"")}


def test_a_body_cut_inside_a_message_is_refused_at_close() -> None:
    wire = encode_message({"a": "b"}, b"payload")
    decoder = EventStreamDecoder()
    assert decoder.feed(wire[:-1]) == []
    assert decoder.pending_bytes == len(wire) - 1
    with pytest.raises(SerializationError, match="inside a message"):
        decoder.close()


def test_a_partial_message_waits_for_the_rest() -> None:
    wire = encode_message({"a": "b"}, b"payload")
    decoder = EventStreamDecoder()
    assert decoder.feed(wire[:5]) == []
    assert decoder.feed(wire[5:20]) == []
    assert decoder.feed(wire[20:] + wire[:3]) == [Message({"a": "b"}, b"payload")]
    assert decoder.pending_bytes == 3
