"""Shard iterators and pagination tokens: opaque, tamper-evident, expiring strings.

A token is ``base64url(payload || mac)`` without padding, where ``mac`` is
HMAC-SHA256 over a one-byte kind tag and the payload, keyed by the broker's
iterator secret (``BrokerConfig.iterator_secret``; when empty, a random key
made per broker, so tokens die with the process). The tag keeps a pagination
token from passing as a shard iterator and the reverse.

A shard iterator's payload is fixed-width big-endian, then the stream name::

    version u8 | incarnation u32 | shard index u32 | offset u64 | issued ms u64 | name

so it is at most 25 + 128 + 32 bytes, 248 characters (Kinesis allows 512).

A pagination token (``NextToken`` of ListStreams and ListShards) carries a
msgpack array of what the listing needs to continue, and its issue time.

Decoding checks, in order: ASCII and length, canonical base64url (a token
that decodes but is not exactly what encoding its bytes gives is refused, so
no character can change without notice), the MAC, then expiry. Garbage or a
changed token is ``InvalidArgumentException``; a genuine token older than its
lifetime is ``ExpiredIteratorException`` (or ``ExpiredNextTokenException``).
Pure: the time is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from ..errors import ExpiredIteratorError, ExpiredNextTokenError, InvalidArgumentError

MAX_TOKEN_CHARS = 512
_MAC_BYTES = 32
_ITERATOR = b"I"
_PAGE = b"P"
_VERSION = 1
_HEADER = struct.Struct(">BIIQQ")
#: A ``NextToken`` lives this long, as in Kinesis.
NEXT_TOKEN_LIFETIME_MS = 300_000


class TokenSigner:
    """Signs byte payloads into ASCII tokens and verifies them back."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, kind: bytes, payload: bytes) -> bytes:
        return hmac.new(self._key, kind + payload, hashlib.sha256).digest()

    def sign(self, kind: bytes, payload: bytes) -> str:
        raw = payload + self._mac(kind, payload)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def verify(self, kind: bytes, token: object, what: str) -> bytes:
        """The payload of a token we signed with ``kind``, else ``InvalidArgumentError``."""
        invalid = InvalidArgumentError(f"{what} is not valid: it was not issued by this broker")
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
            raise invalid
        if not token.isascii():
            raise invalid
        encoded = token.encode("ascii")
        try:
            raw = base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            raise invalid from None
        if base64.urlsafe_b64encode(raw).rstrip(b"=") != encoded or len(raw) <= _MAC_BYTES:
            raise invalid
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(kind, payload)):
            raise invalid
        return payload


def broker_key(secret: str, extras: dict[str, Any]) -> bytes:
    """The signing key: the configured secret, or a random key kept in ``extras``."""
    if secret:
        return hashlib.sha256(b"shardline-iterator:" + secret.encode("utf-8")).digest()
    key = extras.get("iterator_key")
    if not isinstance(key, bytes):
        key = extras["iterator_key"] = os.urandom(32)
    return key


@dataclass(frozen=True, slots=True)
class ShardIterator:
    """Where a reader stands: a stream incarnation's shard, the next offset, and when issued."""

    stream: str
    incarnation: int
    shard_index: int
    offset: int
    issued_ms: int


class IteratorCodec:
    """Issues shard iterators and pagination tokens and opens them again."""

    __slots__ = ("_signer", "lifetime_ms")

    def __init__(self, key: bytes, lifetime_ms: int) -> None:
        self._signer = TokenSigner(key)
        self.lifetime_ms = lifetime_ms

    # -- shard iterators --------------------------------------------------------

    def encode(self, iterator: ShardIterator) -> str:
        header = _HEADER.pack(
            _VERSION,
            iterator.incarnation,
            iterator.shard_index,
            iterator.offset,
            iterator.issued_ms,
        )
        return self._signer.sign(_ITERATOR, header + iterator.stream.encode("utf-8"))

    def decode(self, token: object, now_ms: int) -> ShardIterator:
        """The iterator in ``token``; ``InvalidArgumentError`` or ``ExpiredIteratorError``."""
        payload = self._signer.verify(_ITERATOR, token, "ShardIterator")
        if len(payload) < _HEADER.size:
            raise InvalidArgumentError("ShardIterator is not valid: it is truncated")
        version, incarnation, index, offset, issued = _HEADER.unpack_from(payload)
        if version != _VERSION:
            raise InvalidArgumentError(f"ShardIterator is not valid: unknown version {version}")
        try:
            stream = payload[_HEADER.size :].decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgumentError("ShardIterator is not valid: bad stream name") from None
        if now_ms - issued > self.lifetime_ms:
            raise ExpiredIteratorError(
                f"Iterator expired. The iterator was created at time {issued} while right now "
                f"it is {now_ms} which is further in the future than the tolerated delay of "
                f"{self.lifetime_ms} milliseconds."
            )
        return ShardIterator(stream, incarnation, index, offset, issued)

    # -- pagination tokens --------------------------------------------------------

    def encode_page(self, state: list[Any], now_ms: int) -> str:
        payload: bytes = msgpack.packb([now_ms, *state])
        return self._signer.sign(_PAGE, payload)

    def decode_page(
        self, token: object, now_ms: int, lifetime_ms: int = NEXT_TOKEN_LIFETIME_MS
    ) -> list[Any]:
        """The state a ``NextToken`` carries; ``InvalidArgumentError`` or expired."""
        payload = self._signer.verify(_PAGE, token, "NextToken")
        try:
            values = msgpack.unpackb(payload, raw=False)
        except (ValueError, msgpack.UnpackException):
            raise InvalidArgumentError("NextToken is not valid: bad contents") from None
        if not isinstance(values, list) or not values or not isinstance(values[0], int):
            raise InvalidArgumentError("NextToken is not valid: bad contents")
        issued = values[0]
        if now_ms - issued > lifetime_ms:
            raise ExpiredNextTokenError(
                f"The NextToken was created at time {issued} and is older than "
                f"{lifetime_ms} milliseconds; start the listing again"
            )
        return values[1:]


def codec_for(secret: str, lifetime_s: float, extras: dict[str, Any]) -> IteratorCodec:
    """The broker's codec, made once and kept in ``extras``."""
    codec = extras.get("iterator_codec")
    if not isinstance(codec, IteratorCodec):
        codec = IteratorCodec(broker_key(secret, extras), int(lifetime_s * 1000))
        extras["iterator_codec"] = codec
    return codec
