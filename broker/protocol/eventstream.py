"""AWS event-stream framing (``application/vnd.amazon.eventstream``), sans-IO.

AWS streams the events of SubscribeToShard (and of every other event-stream
operation) as a run of self-delimiting binary *messages*. This module writes
and reads that framing and knows nothing of what the payloads hold
(``broker.protocol.aws_events`` does). The format, as botocore's
``eventstream.py`` reads it and Smithy's "Amazon Event Stream Specification"
defines it; every integer is big-endian::

    message  = prelude headers payload message_crc
    prelude  = total_length:u32 headers_length:u32 prelude_crc:u32
    header   = name_length:u8 name:utf8 type:u8 value
    total_length = 12 (prelude) + headers_length + len(payload) + 4 (message_crc)

``prelude_crc`` is the CRC32 (IEEE, ``zlib.crc32``) of the prelude's first
8 bytes, ``message_crc`` that of every byte before it, prelude included. A
header's value depends on its type (``HeaderType``):

    ====  ==========  ===============================================
    type  name        value
    ====  ==========  ===============================================
    0     true        nothing
    1     false       nothing
    2     byte        i8
    3     short       i16
    4     integer     i32
    5     long        i64
    6     byte_array  u16 length, then that many bytes (1..32767)
    7     string      u16 length, then that many UTF-8 bytes (1..32767)
    8     timestamp   i64 milliseconds since the Unix epoch
    9     uuid        16 bytes
    ====  ==========  ===============================================

Header names are 1..255 UTF-8 bytes and appear at most once per message.
The headers of a message take at most 128 KiB and its payload at most
24 MiB; the specification asks servers to keep to both, and botocore refuses
messages over them, so the encoder refuses to write one (``ValueError``: a
bug of the caller) and ``EventStreamDecoder`` refuses to read one.

*Encoding.* Strings are the common header value, so a header map takes a
``str`` for a string header and a ``HeaderValue`` for any other type. Most
messages of a stream share their headers (every SubscribeToShardEvent has
the same three), so a ``HeaderBlock`` encodes a header map once and
``encode_message`` frames any number of payloads with it: a message then
costs a few small allocations and three CRC passes, whatever its headers.
The CRC of the whole message is chained over its parts (``zlib.crc32``'s
start value), never over a joined copy.

*Decoding.* ``EventStreamDecoder`` is fed bytes in pieces of any size and
returns whole ``Message`` values. It checks the prelude's CRC as soon as the
12 bytes are there, before it trusts the lengths in them, so a corrupt length
is refused at once rather than waited on; then the bounds; then, once the
whole message is there, its CRC and its headers (known types, no duplicate
names, valid UTF-8, nothing cut short). Any failure is a
``SerializationError`` and leaves the decoder failed, as a corrupt stream
cannot be resynchronised: there is no marker to find the next message by.
A string header decodes to ``str``, every other type to a ``HeaderValue``.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

from ..errors import SerializationError

#: The media type of an event-stream body.
CONTENT_TYPE = "application/vnd.amazon.eventstream"

PRELUDE_BYTES = 12
#: Bytes of a message besides its headers and payload: the prelude and the message CRC.
MESSAGE_OVERHEAD = PRELUDE_BYTES + 4
MAX_HEADERS_BYTES = 128 * 1024
MAX_PAYLOAD_BYTES = 24 * 1024 * 1024
MAX_HEADER_NAME_BYTES = 255
#: The longest string or byte-array header value (the specification's 2**15 - 1).
MAX_HEADER_VALUE_BYTES = (1 << 15) - 1

_PRELUDE = struct.Struct(">II")
_PRELUDE_CRC = struct.Struct(">III")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


class HeaderType(IntEnum):
    """A header value's type, as its byte on the wire."""

    TRUE = 0
    FALSE = 1
    BYTE = 2
    SHORT = 3
    INTEGER = 4
    LONG = 5
    BYTE_ARRAY = 6
    STRING = 7
    TIMESTAMP = 8
    UUID = 9


#: The fixed-size integer types: their struct.
_INTEGERS = {
    HeaderType.BYTE: struct.Struct(">b"),
    HeaderType.SHORT: struct.Struct(">h"),
    HeaderType.INTEGER: struct.Struct(">i"),
    HeaderType.LONG: struct.Struct(">q"),
    HeaderType.TIMESTAMP: struct.Struct(">q"),
}
_INTEGER_BITS = {
    HeaderType.BYTE: 8,
    HeaderType.SHORT: 16,
    HeaderType.INTEGER: 32,
    HeaderType.LONG: 64,
    HeaderType.TIMESTAMP: 64,
}


@dataclass(frozen=True, slots=True)
class HeaderValue:
    """A typed header value; a plain ``str`` stands for a string header.

    ``value`` is a ``bool`` for TRUE and FALSE, an ``int`` for the integer
    types and TIMESTAMP (milliseconds), ``bytes`` for BYTE_ARRAY and UUID
    (16 bytes, as botocore gives it), and a ``str`` for STRING. A value of
    the wrong type or out of its integer range is a ``ValueError`` here; the
    length of a string or byte array is checked when it is encoded (1 to
    ``MAX_HEADER_VALUE_BYTES``), so that anything read can be held.
    """

    type: HeaderType
    value: bool | int | bytes | str

    def __post_init__(self) -> None:
        kind, value = self.type, self.value
        if kind is HeaderType.TRUE or kind is HeaderType.FALSE:
            if value is not (kind is HeaderType.TRUE):
                raise ValueError(f"a {kind.name} header holds {kind is HeaderType.TRUE}")
        elif kind in _INTEGER_BITS:
            bits = _INTEGER_BITS[kind]
            if type(value) is not int or not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
                raise ValueError(f"a {kind.name} header holds a {bits}-bit int, got {value!r}")
        elif kind is HeaderType.BYTE_ARRAY:
            if type(value) is not bytes:
                raise ValueError(f"a BYTE_ARRAY header holds bytes, got {value!r:.80}")
        elif kind is HeaderType.STRING:
            if type(value) is not str:
                raise ValueError(f"a STRING header holds a str, got {value!r:.80}")
        elif kind is HeaderType.UUID:
            if type(value) is not bytes or len(value) != 16:
                raise ValueError(f"a UUID header holds 16 bytes, got {value!r:.80}")
        else:  # pragma: no cover - HeaderType is closed
            raise ValueError(f"unknown header type {kind!r}")

    @classmethod
    def boolean(cls, value: bool) -> HeaderValue:
        return cls(HeaderType.TRUE if value else HeaderType.FALSE, bool(value))

    @classmethod
    def byte(cls, value: int) -> HeaderValue:
        return cls(HeaderType.BYTE, value)

    @classmethod
    def short(cls, value: int) -> HeaderValue:
        return cls(HeaderType.SHORT, value)

    @classmethod
    def integer(cls, value: int) -> HeaderValue:
        return cls(HeaderType.INTEGER, value)

    @classmethod
    def long(cls, value: int) -> HeaderValue:
        return cls(HeaderType.LONG, value)

    @classmethod
    def byte_array(cls, value: bytes) -> HeaderValue:
        return cls(HeaderType.BYTE_ARRAY, bytes(value))

    @classmethod
    def string(cls, value: str) -> HeaderValue:
        return cls(HeaderType.STRING, value)

    @classmethod
    def timestamp(cls, millis: int) -> HeaderValue:
        """Milliseconds since the Unix epoch (the wire's unit, not seconds)."""
        return cls(HeaderType.TIMESTAMP, millis)

    @classmethod
    def uuid(cls, value: uuid.UUID | bytes) -> HeaderValue:
        return cls(HeaderType.UUID, value.bytes if isinstance(value, uuid.UUID) else bytes(value))


#: What a header map holds: a ``str`` (a string header) or a typed value.
Header = str | HeaderValue
Headers = Mapping[str, Header]


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded message: its headers (strings as ``str``) and its payload."""

    headers: dict[str, Header]
    payload: bytes

    def text(self, name: str) -> str | None:
        """The string header ``name``, or None if it is absent or of another type."""
        value = self.headers.get(name)
        return value if isinstance(value, str) else None

    def encode(self) -> bytes:
        return encode_message(self.headers, self.payload)


# -- encoding ------------------------------------------------------------------


def _header_bytes(name: str, value: Header) -> bytes:
    raw_name = name.encode()
    if not 1 <= len(raw_name) <= MAX_HEADER_NAME_BYTES:
        raise ValueError(
            f"a header name is 1 to {MAX_HEADER_NAME_BYTES} UTF-8 bytes, got {name!r:.80}"
        )
    head = bytes((len(raw_name),)) + raw_name
    if isinstance(value, str):
        value = HeaderValue(HeaderType.STRING, value)
    elif not isinstance(value, HeaderValue):
        raise ValueError(f"header {name!r} must be a str or a HeaderValue, got {value!r:.80}")
    kind = value.type
    tag = bytes((kind,))
    if kind is HeaderType.TRUE or kind is HeaderType.FALSE:
        return head + tag
    if kind in _INTEGERS:
        return head + tag + _INTEGERS[kind].pack(value.value)
    if kind is HeaderType.UUID:
        assert isinstance(value.value, bytes)
        return head + tag + value.value
    raw = value.value.encode() if isinstance(value.value, str) else value.value
    assert isinstance(raw, bytes)
    if not 1 <= len(raw) <= MAX_HEADER_VALUE_BYTES:
        raise ValueError(
            f"header {name!r:.80} must hold 1 to {MAX_HEADER_VALUE_BYTES} bytes, not {len(raw)}"
        )
    return head + tag + _U16.pack(len(raw)) + raw


class HeaderBlock:
    """A header map encoded once, to frame any number of payloads with (``encode_message``)."""

    __slots__ = ("data", "headers")

    def __init__(self, headers: Headers) -> None:
        self.headers: dict[str, Header] = dict(headers)
        self.data = b"".join(_header_bytes(name, value) for name, value in headers.items())
        if len(self.data) > MAX_HEADERS_BYTES:
            raise ValueError(
                f"headers of {len(self.data)} bytes exceed the {MAX_HEADERS_BYTES}-byte bound"
            )

    def __repr__(self) -> str:
        return f"HeaderBlock({self.headers!r})"


def encode_message(
    headers: Headers | HeaderBlock, payload: bytes | bytearray | memoryview
) -> bytes:
    """One message: ``headers`` (a map, or a ``HeaderBlock`` encoded before) and ``payload``.

    ``ValueError`` if the headers or the payload are over their bounds.
    """
    block = headers if isinstance(headers, HeaderBlock) else HeaderBlock(headers)
    data = block.data
    size = len(payload)
    if size > MAX_PAYLOAD_BYTES:
        raise ValueError(f"a payload of {size} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte bound")
    prelude = _PRELUDE.pack(MESSAGE_OVERHEAD + len(data) + size, len(data))
    prelude += _U32.pack(zlib.crc32(prelude))
    crc = zlib.crc32(payload, zlib.crc32(data, zlib.crc32(prelude)))
    return b"".join((prelude, data, payload, _U32.pack(crc)))


@lru_cache(maxsize=256)
def _event_block(event_type: str, content_type: str) -> HeaderBlock:
    return HeaderBlock(
        {":message-type": "event", ":event-type": event_type, ":content-type": content_type}
    )


@lru_cache(maxsize=256)
def _exception_block(exception_type: str, content_type: str) -> HeaderBlock:
    return HeaderBlock(
        {
            ":message-type": "exception",
            ":exception-type": exception_type,
            ":content-type": content_type,
        }
    )


def event(event_type: str, payload: bytes, content_type: str) -> bytes:
    """An event message (``:message-type`` ``event``) of ``event_type``."""
    return encode_message(_event_block(event_type, content_type), payload)


def exception(exception_type: str, payload: bytes, content_type: str) -> bytes:
    """A modeled error: ``:message-type`` ``exception``, ``:exception-type`` its name.

    ``payload`` is the error's body in the stream's encoding, ``{"message": ...}``.
    """
    return encode_message(_exception_block(exception_type, content_type), payload)


def error(error_code: str, error_message: str) -> bytes:
    """An unmodeled error: ``:error-code`` and ``:error-message`` headers, no payload.

    For an error the operation's model does not list: clients report it by
    these two headers (botocore's ``EventStreamError``, the Java SDK's
    generic service exception).
    """
    return encode_message(
        {":message-type": "error", ":error-code": error_code, ":error-message": error_message},
        b"",
    )


def initial_response(payload: bytes = b"{}", content_type: str = "application/json") -> bytes:
    """The ``initial-response`` event that opens an RPC protocol's event stream.

    botocore refuses a stream whose first message is anything else. Its
    payload is the output's members other than the stream (none, for
    SubscribeToShard): an empty map in the stream's encoding.
    """
    return event("initial-response", payload, content_type)


# -- decoding ------------------------------------------------------------------


class EventStreamDecoder:
    """Messages from a body fed in pieces of any size (sans-IO).

    ``feed`` returns the messages the bytes so far complete; ``close`` says
    the body ended and refuses one cut inside a message. A bad CRC, a length
    over the bounds (``max_headers_bytes``, ``max_payload_bytes``: botocore's
    by default) or malformed headers are a ``SerializationError``, after
    which the decoder refuses everything.
    """

    def __init__(
        self,
        max_headers_bytes: int = MAX_HEADERS_BYTES,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        if max_headers_bytes < 0 or max_payload_bytes < 0:
            raise ValueError("the bounds must not be negative")
        self.max_headers_bytes = max_headers_bytes
        self.max_payload_bytes = max_payload_bytes
        self._buffer = bytearray()
        self._failed = False

    @property
    def pending_bytes(self) -> int:
        """Bytes fed that do not yet complete a message."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        if self._failed:
            raise SerializationError("the event stream already failed to decode")
        self._buffer += data
        messages: list[Message] = []
        try:
            at = 0
            while True:
                message, at = self._next(at)
                if message is None:
                    break
                messages.append(message)
            del self._buffer[:at]
        except SerializationError:
            self._failed = True
            raise
        return messages

    def close(self) -> None:
        """The body ended; ``SerializationError`` if it ended inside a message."""
        if self._buffer and not self._failed:
            self._failed = True
            raise SerializationError(
                f"the event stream ended inside a message ({len(self._buffer)} bytes of it)"
            )

    def _next(self, at: int) -> tuple[Message | None, int]:
        """The message that starts at ``at`` and where the next starts, or (None, at)."""
        buffer = self._buffer
        if len(buffer) - at < PRELUDE_BYTES:
            return None, at
        total, headers_length, prelude_crc = _PRELUDE_CRC.unpack_from(buffer, at)
        if zlib.crc32(buffer[at : at + 8]) != prelude_crc:
            raise SerializationError("an event-stream message's prelude fails its CRC")
        if headers_length > self.max_headers_bytes:
            raise SerializationError(
                f"an event-stream message has {headers_length} bytes of headers, over the "
                f"bound of {self.max_headers_bytes}"
            )
        payload_length = total - MESSAGE_OVERHEAD - headers_length
        if payload_length < 0:
            raise SerializationError(
                f"an event-stream message of {total} bytes cannot hold {headers_length} bytes "
                "of headers"
            )
        if payload_length > self.max_payload_bytes:
            raise SerializationError(
                f"an event-stream message has a payload of {payload_length} bytes, over the "
                f"bound of {self.max_payload_bytes}"
            )
        end = at + total
        if len(buffer) < end:
            return None, at
        # One copy out of the buffer, which must not stay exported (it is resized).
        with memoryview(buffer) as view:
            raw = bytes(view[at:end])
        body = memoryview(raw)
        (message_crc,) = _U32.unpack_from(raw, total - 4)
        if zlib.crc32(body[:-4]) != message_crc:
            raise SerializationError("an event-stream message fails its CRC")
        headers_end = PRELUDE_BYTES + headers_length
        headers = _parse_headers(body[PRELUDE_BYTES:headers_end])
        return Message(headers, raw[headers_end:-4]), end


def _parse_headers(data: memoryview) -> dict[str, Header]:
    headers: dict[str, Header] = {}
    reader = _Reader(data)
    while reader.at < len(data):
        name_length = reader.take(1)[0]
        if name_length == 0:
            raise SerializationError("an event-stream header has an empty name")
        name = reader.text(name_length)
        kind = reader.take(1)[0]
        value: Header
        if kind == HeaderType.TRUE or kind == HeaderType.FALSE:
            value = HeaderValue.boolean(kind == HeaderType.TRUE)
        elif kind in _INTEGERS:
            packer = _INTEGERS[HeaderType(kind)]
            (number,) = packer.unpack(reader.take(packer.size))
            value = HeaderValue(HeaderType(kind), number)
        elif kind == HeaderType.UUID:
            value = HeaderValue(HeaderType.UUID, bytes(reader.take(16)))
        elif kind == HeaderType.STRING:
            (length,) = _U16.unpack(reader.take(2))
            value = reader.text(length)
        elif kind == HeaderType.BYTE_ARRAY:
            (length,) = _U16.unpack(reader.take(2))
            value = HeaderValue(HeaderType.BYTE_ARRAY, bytes(reader.take(length)))
        else:
            raise SerializationError(f"an event-stream header has unknown type {kind}")
        if name in headers:
            raise SerializationError(f"the event-stream header {name!r:.80} appears twice")
        headers[name] = value
    return headers


class _Reader:
    """Bounds-checked reads from a message's header block."""

    __slots__ = ("at", "data")

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> memoryview:
        start, self.at = self.at, self.at + n
        if self.at > len(self.data):
            raise SerializationError("an event-stream header is cut short")
        return self.data[start : self.at]

    def text(self, n: int) -> str:
        try:
            return str(self.take(n), "utf-8")
        except UnicodeDecodeError as exc:
            raise SerializationError(f"an event-stream header is not valid UTF-8: {exc}") from None


__all__ = [
    "CONTENT_TYPE",
    "MAX_HEADERS_BYTES",
    "MAX_HEADER_VALUE_BYTES",
    "MAX_PAYLOAD_BYTES",
    "EventStreamDecoder",
    "Header",
    "HeaderBlock",
    "HeaderType",
    "HeaderValue",
    "Headers",
    "Message",
    "encode_message",
    "error",
    "event",
    "exception",
    "initial_response",
]
